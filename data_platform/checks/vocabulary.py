"""The contract's value lists, read from the dbt project's vars: one source for dbt and checks.

dbt's staging and marts decide with these vars what is a known event type or payment status and
what amount is plausible; the checks must judge with the very same lists, so they read them
from dbt_project.yml instead of repeating them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from data_platform.assets.dbt_project import dbt_vars


@dataclass(frozen=True)
class Vocabulary:
    event_types: tuple[str, ...]
    payment_statuses: tuple[str, ...]
    currencies: tuple[str, ...]
    payment_amount_min: float
    payment_amount_max: float
    # The Unicode space separators (category Zs) staging trims (dbt macro trim_spaces).
    space_separators: str


@cache
def vocabulary() -> Vocabulary:
    variables = dbt_vars()
    return Vocabulary(
        event_types=tuple(variables["known_event_types"]),
        payment_statuses=tuple(variables["known_payment_statuses"]),
        currencies=tuple(variables["known_currencies"]),
        payment_amount_min=float(variables["payment_amount_min"]),
        payment_amount_max=float(variables["payment_amount_max"]),
        space_separators=variables["space_separators"],
    )


def sql_list(values: tuple[str, ...]) -> str:
    """A SQL list literal of plain identifiers-like values, e.g. ('a', 'b')."""
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"
