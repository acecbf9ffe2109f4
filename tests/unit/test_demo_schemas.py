"""Demo schemas: parseable, shared fields, clicks v2 BACKWARD compatible with v1."""

import avro.schema
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from lakehouse.demo.streams import SCHEMAS, demo_schema


@pytest.mark.parametrize("schema", [s for v in SCHEMAS.values() for s in v], ids=str)
def test_every_schema_has_id_and_event_time(schema) -> None:
    fields = schema.fields
    assert fields[:2] == ["event_id", "event_time"]
    assert avro.schema.parse(schema.text).namespace == "lakehouse.demo"


def test_clicks_v2_is_backward_compatible() -> None:
    v1 = avro.schema.parse(demo_schema("clicks", 1).text)
    v2 = avro.schema.parse(demo_schema("clicks", 2).text)
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader=v2, writer=v1)
    assert result.compatibility is SchemaCompatibilityType.compatible
    assert demo_schema("clicks", 2).fields == [*demo_schema("clicks", 1).fields, "user_location"]


def test_unknown_versions_rejected() -> None:
    with pytest.raises(ValueError):
        demo_schema("payments", 2)
    with pytest.raises(ValueError):
        demo_schema("orders")
