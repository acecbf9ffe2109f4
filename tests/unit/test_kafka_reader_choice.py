"""Which Kafka reader a run uses, and the columnar reader's config conversion."""

import pytest

from lakehouse import ingest
from lakehouse.kafka.columnar import ColumnarConsumer, _librdkafka_value
from lakehouse.kafka.reader import KafkaReadError
from lakehouse.settings import Settings


def test_auto_is_columnar_where_built_else_the_reader_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auto = Settings(kafka_reader="auto")
    monkeypatch.setattr(ingest, "columnar_unavailable", lambda: None)
    assert ingest.reader_kind(auto) == "columnar"
    monkeypatch.setattr(ingest, "columnar_unavailable", lambda: "no C compiler at install")
    assert ingest.reader_kind(auto) == "process"
    assert ingest.reader_kind(Settings(kafka_reader="thread")) == "thread"


def test_asking_for_columnar_where_it_is_not_built_fails_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingest, "columnar_unavailable", lambda: "no C compiler at install")
    with pytest.raises(KafkaReadError, match="no C compiler at install"):
        ingest.reader_kind(Settings(kafka_reader="columnar"))


def test_an_unknown_reader_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match="kafka_reader"):
        Settings(kafka_reader="fast")  # type: ignore[arg-type]


def test_config_values_become_librdkafka_strings() -> None:
    assert _librdkafka_value("enable.auto.commit", False) == "false"
    assert _librdkafka_value("enable.partition.eof", True) == "true"
    assert _librdkafka_value("fetch.max.bytes", 1 << 20) == "1048576"
    assert _librdkafka_value("security.protocol", "SASL_SSL") == "SASL_SSL"
    with pytest.raises(KafkaReadError, match="oauth_cb"):
        _librdkafka_value("oauth_cb", print)


def test_a_bad_property_fails_before_connecting() -> None:
    with pytest.raises(KafkaReadError, match=r"no\.such\.property"):
        ColumnarConsumer({"bootstrap.servers": "127.0.0.1:1", "no.such.property": "1"})
