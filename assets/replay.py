"""Dead-letter replay assets: `bronze/<stream>/replay_dead_letters`, one per stream.

Materializing one decodes the chosen dead letters again with today's registry and table and
writes those that now decode into the bronze table exactly once (docs/schema-evolution.md).
"""

import dagster as dg
from pydantic import Field

from assets.bronze import parse_ranges
from assets.heartbeat import heartbeat
from assets.keys import replay_key
from assets.resources import LakehouseResource
from lakehouse.config import Declarations, StreamSpec
from lakehouse.iceberg.dead_letter_replays import Selection
from lakehouse.replay import replay_dead_letters

DEAD_LETTERS_KEY = dg.AssetKey(["bronze", "dead_letters"])


class ReplayConfig(dg.Config):
    """Which dead letters to replay; empty takes every one not replayed yet."""

    error_kinds: list[str] = Field(
        default=[],
        description="Only these kinds, e.g. ['unknown-schema-id', 'incompatible-schema'].",
    )
    schema_ids: list[int] = Field(default=[], description="Only messages of these schema ids.")
    offsets: str | None = Field(
        default=None, description="Only 'partition:start-end,...' (end exclusive)."
    )


def replay_asset(spec: StreamSpec, declarations: Declarations) -> dg.AssetsDefinition:
    """The replay asset of one stream."""

    @dg.asset(
        key=replay_key(spec),
        deps=[DEAD_LETTERS_KEY],
        description=f"Replays {spec.topic}'s dead letters into {spec.table}, exactly once.",
        group_name="bronze",
        kinds={"iceberg"},
        metadata={"table": spec.table, "dead_letter_table": declarations.dead_letter_table},
    )
    def _replay(
        context: dg.AssetExecutionContext, config: ReplayConfig, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        selection = Selection(
            frozenset(config.error_kinds),
            frozenset(config.schema_ids),
            parse_ranges(config.offsets) if config.offsets else None,
        )
        settings = lakehouse.settings()
        with heartbeat(context, settings):
            report = replay_dead_letters(
                settings,
                spec,
                dead_letter_table=declarations.dead_letter_table,
                run_id=context.run.run_id,
                selection=selection,
            )
        return dg.MaterializeResult(metadata=report.as_metadata())

    return _replay


def replay_assets(declarations: Declarations) -> list[dg.AssetsDefinition]:
    """One replay asset per declared stream."""
    return [replay_asset(spec, declarations) for spec in declarations.streams.values()]
