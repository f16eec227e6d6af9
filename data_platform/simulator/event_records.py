"""One day's events as render-ready columns, with the contract's defects injected.

Each line of an events file is described by numbers only (ids, codes, epoch ms) plus small
*mode* codes that say how to spell each field: `event_sql.py` turns them into JSON text in
DuckDB. Defects are either a mode (a missing, null or mistyped field, a truncated or non-object
line, an offset timestamp, extra fields) or a changed value (an orphan user, an unknown type, a
late timestamp), or an inserted line (an exact duplicate, a blank line).
"""

from __future__ import annotations

import numpy as np

from data_platform.simulator.clock import DAY_MS
from data_platform.simulator.defects import (
    BLANK,
    Allocation,
    DefectKinds,
    Lines,
    allocate,
    lay_out,
)
from data_platform.simulator.funnel import SIGNUP, STAGES
from data_platform.simulator.sessions import Visits

UNKNOWN_TYPES = ("wishlist_add", "share_product", "video_play")
EVENT_TYPES = STAGES + UNKNOWN_TYPES
ORPHAN_USER_BASE = 900_000_000

EVENT_DEFECTS = DefectKinds(
    names=(
        "truncated_json",
        "not_an_object",
        "missing_required_field",
        "null_required_field",
        "wrong_type",
        "digit_string_user_id",
        "offset_timestamp",
        "naive_timestamp",
        "extra_fields",
        "duplicate",
        "late_event",
        "orphan_user_id",
        "unknown_event_type",
        "blank_line",
    ),
    hard=frozenset(
        {
            "truncated_json",
            "not_an_object",
            "missing_required_field",
            "null_required_field",
            "wrong_type",
        }
    ),
)

MODE_COLUMNS = ("line_mode", "eid_mode", "uid_mode", "type_mode", "ts_mode", "extra_mode")
# kind -> the (mode column, mode) of each variant; the codes are spelled out in event_sql.py.
KIND_MODES: dict[str, tuple[tuple[str, int], ...]] = {
    "truncated_json": (("line_mode", 1),),
    "not_an_object": (("line_mode", 2), ("line_mode", 3), ("line_mode", 4), ("line_mode", 5)),
    "missing_required_field": (("eid_mode", 1), ("uid_mode", 2), ("type_mode", 1), ("ts_mode", 6)),
    "null_required_field": (("eid_mode", 2), ("uid_mode", 3), ("type_mode", 2), ("ts_mode", 7)),
    "wrong_type": (
        ("uid_mode", 4),
        ("uid_mode", 5),
        ("uid_mode", 6),
        ("uid_mode", 7),
        ("ts_mode", 8),
        ("ts_mode", 9),
        ("eid_mode", 3),
        ("type_mode", 3),
    ),
    "digit_string_user_id": (("uid_mode", 1),),
    "offset_timestamp": (("ts_mode", 1), ("ts_mode", 2), ("ts_mode", 3)),
    "naive_timestamp": (("ts_mode", 4), ("ts_mode", 5)),
    "extra_fields": (("extra_mode", 1), ("extra_mode", 2), ("extra_mode", 3)),
}
BLANK_LINE_MODES = (6, 7)


def clean_columns(
    rng: np.random.Generator,
    visits: Visits,
    amount_cents: np.ndarray,
    order_id: np.ndarray,
    session_currency: np.ndarray,
) -> dict[str, np.ndarray]:
    """Contract-valid events, in arrival (= occurrence) order."""
    order = np.argsort(visits.occurred_ms, kind="stable")
    n = len(order)
    stage = visits.stage[order].astype(np.int64)
    session = visits.session[order]
    columns = {
        "eid_a": rng.integers(0, 1 << 62, n),
        "eid_b": rng.integers(0, 1 << 62, n),
        "user_id": visits.user_id[order],
        "type_code": stage,
        "props_code": stage,
        "ts_ms": visits.occurred_ms[order],
        # Signups come from the backend, outside any browser session.
        "sess_key": np.where(stage == SIGNUP, 0, visits.session_key[session]),
        "product_id": visits.product_id[order],
        "quantity": visits.quantity[order],
        "label": visits.label[order],
        "amount_cents": amount_cents[order],
        "order_id": order_id[order],
        "currency": session_currency[session],
    }
    columns.update({mode: np.zeros(n, dtype=np.int64) for mode in MODE_COLUMNS})
    return columns


def inject(
    rng: np.random.Generator, columns: dict[str, np.ndarray], rate: float
) -> tuple[dict[str, np.ndarray], np.ndarray, Lines]:
    """Apply defects: (columns per line, defect code per line, line layout)."""
    n = len(columns["ts_ms"])
    alloc = allocate(rng, n, rate, len(EVENT_DEFECTS.names))
    columns = {name: values.copy() for name, values in columns.items()}
    for kind, variants in KIND_MODES.items():
        rows, variant = alloc.of(EVENT_DEFECTS.code(kind))
        for number, (column, mode) in enumerate(variants):
            columns[column][rows[variant % len(variants) == number]] = mode
    _change_values(rng, columns, alloc)

    lines, line_kinds = lay_out(rng, alloc, EVENT_DEFECTS, n, max_shift=50)
    per_line = {name: values[lines.source] for name, values in columns.items()}
    is_blank = lines.role == BLANK
    per_line["line_mode"][is_blank] = np.array(BLANK_LINE_MODES)[lines.source[is_blank] % 2]
    return per_line, line_kinds, lines


def _change_values(
    rng: np.random.Generator, columns: dict[str, np.ndarray], alloc: Allocation
) -> None:
    late, variant = alloc.of(EVENT_DEFECTS.code("late_event"))
    columns["ts_ms"][late] -= (1 + variant % 5) * DAY_MS
    orphans, _ = alloc.of(EVENT_DEFECTS.code("orphan_user_id"))
    columns["user_id"][orphans] = ORPHAN_USER_BASE + rng.integers(0, 1_000_000, len(orphans))
    unknown, variant = alloc.of(EVENT_DEFECTS.code("unknown_event_type"))
    columns["type_code"][unknown] = len(STAGES) + variant % len(UNKNOWN_TYPES)
