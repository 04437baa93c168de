"""`--json`: one JSON document on stdout and nothing else (messages go to stderr). Money in USD as numbers, times
as ISO 8601 with their zone, durations in seconds; NaN and infinities become null. The shapes are pinned by the
JSON schemas in tests/data/schemas/."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

JSON_HELP = "Print JSON (one document on stdout, nothing else) instead of the table."


def iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).astimezone().isoformat(timespec="seconds") if epoch else None


def clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def emit(document: Any) -> None:
    import json

    import click

    click.echo(json.dumps(clean(document), indent=2, default=str, allow_nan=False))
