"""`lakehouse demo ...`: produce demo events, list the demo schemas."""

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lakehouse.demo.producer import produce_many
from lakehouse.demo.report import ProduceReport
from lakehouse.demo.streams import SCHEMAS, STREAMS
from lakehouse.errors import LakehouseError
from lakehouse.settings import load_settings

demo_app = typer.Typer(help="Demo data: produce events to the local stack.", no_args_is_help=True)


class Which(StrEnum):
    clicks = "clicks"
    payments = "payments"
    readings = "readings"
    all = "all"


@demo_app.command("produce")
def produce_command(
    stream: Annotated[Which, typer.Argument(help="Which stream, or all at once.")] = Which.all,
    count: Annotated[int | None, typer.Option(help="Messages per stream.")] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    rate: Annotated[float | None, typer.Option(help="At most this many msg/s per stream.")] = None,
    late_fraction: Annotated[float, typer.Option(help="Share of events 1-45 min late.")] = 0.0,
    malformed_fraction: Annotated[float, typer.Option(help="Share of malformed values.")] = 0.0,
    v2_after: Annotated[int | None, typer.Option(help="Clicks switch to v2 after N.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible events.")] = None,
    fast: Annotated[
        bool, typer.Option(help="Frame fastavro output directly (same bytes).")
    ] = False,
) -> None:
    """Produce until --count or --duration is reached, or Ctrl-C; then flush and report."""
    streams = list(STREAMS) if stream is Which.all else [stream.value]
    stop = threading.Event()
    try:
        with _stop_on_signals(stop):
            reports = produce_many(
                load_settings(),
                streams,
                stop=stop,
                seed=seed,
                count=count,
                duration=duration,
                rate=rate,
                late_fraction=late_fraction,
                malformed_fraction=malformed_fraction,
                v2_after=v2_after,
                fast=fast,
            )
    except (LakehouseError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    _print(list(reports.values()))
    if any(not r.ok for r in reports.values()):
        raise typer.Exit(1)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C or SIGTERM asks the producers to stop, flush and report; a second one aborts."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        typer.secho("stopping: flushing outstanding messages...", err=True)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@demo_app.command("schemas")
def schemas_command() -> None:
    """List the demo streams, their schema versions and fields."""
    table = Table("stream", "version", "file", "fields")
    for versions in SCHEMAS.values():
        for schema in versions:
            table.add_row(schema.stream, str(schema.version), schema.file, ", ".join(schema.fields))
    Console().print(table)


def _print(reports: list[ProduceReport]) -> None:
    for report in reports:
        typer.echo(report.summary())
        for error in report.errors:
            typer.secho(f"  {error}", fg="red")
