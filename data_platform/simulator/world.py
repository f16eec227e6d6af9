"""The state of the application database, as four DataFrames, and how one day changes it.

Timestamps are Int64 epoch milliseconds and prices are integer cents, so the state read back
from the database equals the state that was written: `append_day` continues from the database
exactly where `simulate` left off, and simulating N+1 days equals N days plus one append.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

_TEXT, _INT, _NULLABLE = "object", "int64", "Int64"
TABLE_DTYPES: dict[str, dict[str, str]] = {
    "users": {
        "id": _INT,
        "email": _TEXT,
        "full_name": _TEXT,
        "country": _TEXT,
        "created_at": _INT,
        "updated_at": _INT,
        "deleted_at": _NULLABLE,
    },
    "products": {
        "id": _INT,
        "sku": _TEXT,
        "name": _TEXT,
        "category": _TEXT,
        "price_cents": _INT,
        "updated_at": _INT,
    },
    "orders": {
        "id": _INT,
        "user_id": _INT,
        "status": _TEXT,
        "ordered_at": _INT,
        "updated_at": _INT,
    },
    "order_items": {
        "id": _INT,
        "order_id": _INT,
        "product_id": _INT,
        "quantity": _INT,
        "price_cents": _INT,
        "updated_at": _INT,
    },
}
TABLE_NAMES = tuple(TABLE_DTYPES)

CURRENCY_BY_COUNTRY = {"US": "USD", "GB": "GBP"}
DEFAULT_CURRENCY = "EUR"


def typed(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with exactly the table's columns, in order, with their canonical dtypes."""
    dtypes = TABLE_DTYPES[table]
    frame = frame.loc[:, list(dtypes)].reset_index(drop=True)
    differing = {name: kind for name, kind in dtypes.items() if str(frame[name].dtype) != kind}
    return frame.astype(differing) if differing else frame


_EMPTY = {
    table: pd.DataFrame({name: pd.Series(dtype=kind) for name, kind in dtypes.items()})
    for table, dtypes in TABLE_DTYPES.items()
}


def empty_frame(table: str) -> pd.DataFrame:
    return _EMPTY[table].copy()


@dataclass(frozen=True)
class TableChanges:
    """New rows and changed rows (complete rows, keyed by id) of one table."""

    inserted: pd.DataFrame
    updated: pd.DataFrame


@dataclass(frozen=True)
class World:
    users: pd.DataFrame
    products: pd.DataFrame
    orders: pd.DataFrame
    order_items: pd.DataFrame

    def table(self, name: str) -> pd.DataFrame:
        return getattr(self, name)

    def next_id(self, name: str) -> int:
        ids = self.table(name)["id"]
        return int(ids.max()) + 1 if len(ids) else 1

    def apply(self, changes: dict[str, TableChanges]) -> World:
        """The world after a day: updated rows replace their old version, new rows are added."""
        tables = {name: _upsert(name, self.table(name), changes.get(name)) for name in TABLE_NAMES}
        return World(**tables)

    def currency_of_users(self, user_ids: np.ndarray) -> np.ndarray:
        """The ISO 4217 code each user pays in (by country), for an array of user ids."""
        countries = self.users.set_index("id")["country"].reindex(user_ids)
        mapped = countries.map(CURRENCY_BY_COUNTRY).fillna(DEFAULT_CURRENCY)
        return mapped.to_numpy(dtype=object)

    def order_totals(self) -> pd.Series:
        """Cents per order id: the sum of quantity x unit price of its items."""
        items = self.order_items
        amount = items["quantity"].astype("int64") * items["price_cents"].astype("int64")
        return amount.groupby(items["order_id"].astype("int64")).sum()


def _upsert(table: str, frame: pd.DataFrame, change: TableChanges | None) -> pd.DataFrame:
    if change is None or not (len(change.inserted) or len(change.updated)):
        return frame
    kept = frame[~frame["id"].isin(change.updated["id"])]
    parts = [typed(table, part) for part in (kept, change.updated, change.inserted) if len(part)]
    merged = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return merged.sort_values("id", kind="stable").reset_index(drop=True)
