"""Report base: numbers a Dagster asset can publish as materialization metadata."""

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Report:
    """A frozen dataclass whose int/float/str fields become metadata; other fields are skipped."""

    def as_metadata(self) -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                out[f.name] = int(value)
            elif isinstance(value, int | float | str):
                out[f.name] = value
        return out
