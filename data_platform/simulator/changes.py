"""Day-to-day changes of existing rows: e-mail changes, soft deletes and price changes.

These are what make the warehouse's SCD2 snapshots and the incremental extraction interesting:
each change rewrites a row in place and bumps its updated_at, so only an extractor that keeps
every version it saw can tell the history. Every day changes at least one e-mail address and
re-prices at least one product, even in tiny worlds, so a test always has something to find.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_platform.simulator.catalog import EMAIL_DOMAINS
from data_platform.simulator.clock import DAY_MS, HOUR_MS
from data_platform.simulator.world import TableChanges, empty_frame, positions, typed

EMAIL_CHANGE_RATE = 0.004  # per active user and day
SOFT_DELETE_RATE = 0.0008
PRICE_CHANGE_RATE = 0.03  # per product and day
SIGNUP_RATE = 0.005  # new users per existing user and day


def signup_count(rng: np.random.Generator, n_users: int) -> int:
    return max(1, int(rng.poisson(n_users * SIGNUP_RATE)))


def active_user_ids(users: pd.DataFrame, day_ms: int) -> np.ndarray:
    """Users who existed before the day began and are not deleted."""
    alive = users["deleted_at"].isna() & (users["created_at"] < day_ms)
    return users.loc[alive, "id"].to_numpy(dtype=np.int64)


def _pick(rng: np.random.Generator, pool: np.ndarray, rate: float, minimum: int) -> np.ndarray:
    n = min(len(pool), max(minimum, int(rng.binomial(len(pool), rate))))
    return np.sort(rng.choice(pool, n, replace=False)) if n else pool[:0]


def user_changes(rng: np.random.Generator, users: pd.DataFrame, day_ms: int) -> TableChanges:
    """Some active users change their e-mail address, a few others delete their account."""
    pool = active_user_ids(users, day_ms)
    changed = _pick(rng, pool, EMAIL_CHANGE_RATE, minimum=1)
    # pool is sorted and unique (ids), which spares setdiff1d a hash of every user every day.
    deleted = _pick(rng, np.setdiff1d(pool, changed, assume_unique=True), SOFT_DELETE_RATE, 0)
    at, _ = positions(users, np.concatenate([changed, deleted]))
    rows = users.iloc[at].reset_index(drop=True)
    when = day_ms + rng.integers(0, DAY_MS, len(rows))
    rows["updated_at"] = when
    n_changed = len(changed)
    rows.loc[rows.index[:n_changed], "email"] = new_emails(rng, rows["full_name"][:n_changed])
    rows["deleted_at"] = pd.array([pd.NA] * n_changed + list(when[n_changed:]), dtype="Int64")
    return TableChanges(empty_frame("users"), typed("users", rows.sort_values("id")))


def new_emails(rng: np.random.Generator, full_names: pd.Series) -> list[str]:
    """A fresh address at another provider, derived from the person's name."""
    local = full_names.str.lower().str.replace(" ", ".", regex=False)
    suffix = rng.integers(10, 10_000, len(full_names))
    domain = rng.choice(EMAIL_DOMAINS, len(full_names))
    return [f"{name}.{n}@{d}" for name, n, d in zip(local, suffix, domain, strict=True)]


def price_changes(rng: np.random.Generator, products: pd.DataFrame, day_ms: int) -> TableChanges:
    """Re-price a few products in the first hour of the day (a nightly pricing job)."""
    chosen = _pick(rng, products["id"].to_numpy(dtype=np.int64), PRICE_CHANGE_RATE, minimum=1)
    rows = products.set_index("id").loc[chosen].reset_index()
    factor = rng.uniform(0.85, 1.15, len(rows))
    old = rows["price_cents"].to_numpy(dtype=np.int64)
    new = np.maximum(np.floor(old * factor / 100).astype(np.int64), 1) * 100 + 99
    rows["price_cents"] = np.where(new == old, old + 100, new)
    rows["updated_at"] = day_ms + rng.integers(0, HOUR_MS, len(rows))
    return TableChanges(empty_frame("products"), typed("products", rows))
