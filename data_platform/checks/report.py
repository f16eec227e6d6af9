"""How check results read in the UI: small markdown tables, cells made safe for one line."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:  # pandas loads when a check first reports, not with the Definitions
    import pandas as pd

MAX_CELL = 120
# Days named in a failed check's description; the rest are counted (all are in `per_dt`).
DAYS_DESCRIBED = 3


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


def days_described(days: Iterable[str]) -> str:
    """A failed check's days for its one-line description (`2026-01-05: 60 of 120 records`):
    the first DAYS_DESCRIBED, then how many more. Descriptions said "1 partition(s)", the days
    and figures a click deeper."""
    days = list(days)
    more = f"; {len(days) - DAYS_DESCRIBED} more day(s)" if len(days) > DAYS_DESCRIBED else ""
    return "; ".join(days[:DAYS_DESCRIBED]) + more
