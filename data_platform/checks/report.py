"""How check results read in the UI: small markdown tables, cells made safe for one line."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:  # pandas loads when a check first reports, not with the Definitions
    import pandas as pd

MAX_CELL = 120


def _cell(value: object) -> str:
    import pandas as pd

    text = "" if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)) else str(value)
    text = text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of `frame` (index dropped), one line per row."""
    lines = [
        "| " + " | ".join(_cell(c) for c in frame.columns) + " |",
        "|" + "---|" * len(frame.columns),
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def day_list(days: Iterable[date]) -> dg.JsonMetadataValue:
    """Partitions (e.g. the flagged ones) as a sorted JSON list of ISO dates."""
    return dg.MetadataValue.json(sorted(str(day) for day in days))
