"""`lakehouse stack up | down | status`."""

import time

import typer
from rich.console import Console
from rich.table import Table

from lakehouse.errors import LakehouseError
from lakehouse.settings import load_settings
from lakehouse.stack.local import LocalStack, StackStatus

stack_app = typer.Typer(help="The local Kafka broker and schema registry.", no_args_is_help=True)
console = Console()


def _table(status: StackStatus) -> Table:
    table = Table(show_header=True, header_style="bold")
    for column in ("service", "address", "pid", "running", "answering", "RSS"):
        table.add_column(column, no_wrap=True)
    for service in status.services:
        rss = f"{service.rss_bytes / 2**20:.0f} MiB" if service.rss_bytes else "-"
        table.add_row(
            service.name,
            service.address,
            str(service.pid or "-"),
            "yes" if service.running else "no",
            "[green]yes[/]" if service.answering else "[red]no[/]",
            rss,
        )
    return table


def _print(status: StackStatus) -> None:
    console.print(_table(status))
    for service in status.services:
        console.print(f"{service.name}: {service.address}  log: {service.log_file}", soft_wrap=True)


def _stack() -> LocalStack:
    try:
        return LocalStack(load_settings())
    except (ValueError, LakehouseError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc


@stack_app.command()
def up() -> None:
    """Start Kafka and the registry (fetching jars on first use); harmless if already up."""
    stack = _stack()
    started = time.monotonic()
    try:
        status = stack.up()
    except LakehouseError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    _print(status)
    console.print(f"up in {time.monotonic() - started:.1f} s; state in {stack.home}")


@stack_app.command()
def down() -> None:
    """Stop the registry and the broker; their data stays for the next `up`."""
    stack = _stack()
    try:
        stack.down()
    except LakehouseError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print("stack stopped")


@stack_app.command()
def status() -> None:
    """Show each service: address, pid, whether it answers. Exit 1 unless all answer."""
    current = _stack().status()
    _print(current)
    if not current.answering:
        raise typer.Exit(1)
