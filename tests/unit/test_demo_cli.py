"""The demo CLI and report, without a broker."""

import pytest
from typer.testing import CliRunner

from lakehouse.demo.commands import demo_app
from lakehouse.demo.producer import produce, produce_many
from lakehouse.demo.report import ProduceReport
from lakehouse.settings import Settings


def test_schemas_lists_every_version() -> None:
    result = CliRunner().invoke(demo_app, ["schemas"])
    assert result.exit_code == 0
    for name in ("clicks_v1.avsc", "clicks_v2.avsc", "payments.avsc", "readings.avsc"):
        assert name in result.output


def test_report_accounts_for_failures() -> None:
    report = ProduceReport("clicks", "clicks", seed=1, produced=5, delivered=3, seconds=2.0)
    report.malformed["truncated"] += 1
    report.error("delivery: broker down")
    report.error("delivery: broker down")
    assert report.failed == 2 and report.errors == ["delivery: broker down"]
    assert not report.ok and report.rate == 2.0
    assert "3 delivered, 2 failed" in report.summary()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "rate"),
        ({"malformed_fraction": 1.5}, "malformed_fraction"),
        ({"late_fraction": -0.1}, "late_fraction"),
        ({"count": -1}, "count"),
    ],
)
def test_bad_options_fail_before_connecting(kwargs: dict, message: str) -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1")
    with pytest.raises(ValueError, match=message):
        produce(settings, "clicks", progress=False, **kwargs)


def test_produce_many_rejects_unknown_options() -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1")
    with pytest.raises(TypeError):
        produce_many(settings, ["clicks"], progress=False, cuont=5)
