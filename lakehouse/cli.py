"""The `lakehouse` console script: local stack and demo data."""

import typer

from lakehouse.demo.commands import demo_app
from lakehouse.stack.commands import stack_app

app = typer.Typer(
    help="lakehouse: Kafka → Iceberg, exactly once, as Dagster assets.", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")
app.add_typer(demo_app, name="demo")

if __name__ == "__main__":
    app()
