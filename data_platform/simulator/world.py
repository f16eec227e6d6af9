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
    """`frame` with exactly the table's columns, in order, with their canonical dtypes.

    A frame that already is (every change a day applies) comes back as it is, uncopied.
    """
    dtypes = TABLE_DTYPES[table]
    if (
        list(frame.columns) == list(dtypes)
        and [str(kind) for kind in frame.dtypes] == list(dtypes.values())
        and frame.index.equals(pd.RangeIndex(len(frame)))
    ):
        return frame
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
        at, found = positions(self.users, user_ids)
        countries = self.users["country"].to_numpy()[at[found]]
        mapped = np.full(len(user_ids), DEFAULT_CURRENCY, dtype=object)
        for country, currency in CURRENCY_BY_COUNTRY.items():
            mapped[np.flatnonzero(found)[countries == country]] = currency
        return mapped

    def order_totals(self, order_ids: np.ndarray) -> np.ndarray:
        """Cents per order of `order_ids`: the sum of quantity x unit price of its items."""
        items = self.order_items
        of_order = items["order_id"].to_numpy(dtype=np.int64)
        wanted = np.isin(of_order, order_ids)
        amount = (
            items["quantity"].to_numpy(dtype=np.int64)[wanted]
            * items["price_cents"].to_numpy(dtype=np.int64)[wanted]
        )
        totals = pd.Series(amount).groupby(of_order[wanted]).sum()
        return totals.reindex(order_ids).to_numpy(dtype=np.int64)


def positions(frame: pd.DataFrame, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row position, found) of each id in a table, by binary search: tables are sorted by id,
    and indexing one by id (set_index) would copy all of it, several times a simulated day."""
    table_ids = frame["id"].to_numpy()
    at = np.searchsorted(table_ids, ids)
    found = at < len(table_ids)
    found[found] = table_ids[at[found]] == np.asarray(ids)[found]
    return at, found


def _upsert(table: str, frame: pd.DataFrame, change: TableChanges | None) -> pd.DataFrame:
    """`frame` (sorted by id) with the updated rows replaced in place and the new rows appended.

    Updated rows exist and new ids come after the last one (ids are handed out in order), so
    the result is sorted by id without sorting: a day's change costs a copy of the table, not a
    sort of it, which matters once a year of orders has accumulated.
    """
    if change is None or not (len(change.inserted) or len(change.updated)):
        return frame
    updated, inserted = typed(table, change.updated), typed(table, change.inserted)
    at, found = positions(frame, updated["id"].to_numpy())
    new_ids = inserted["id"].to_numpy()
    assert found.all() and len(np.unique(at)) == len(at), f"{table}: updates must hit one row each"
    assert np.all(np.diff(new_ids) > 0) and (
        not len(frame) or not len(new_ids) or new_ids[0] > frame["id"].iat[-1]
    ), f"{table}: new ids must be ascending and above the existing ones"
    parts = [part for part in (frame, updated, inserted) if len(part)]
    merged = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    if not len(updated):
        return merged
    rows = np.arange(len(merged))
    rows[at] = len(frame) + np.arange(len(updated))
    rows = np.delete(rows, np.arange(len(frame), len(frame) + len(updated)))
    result = merged.take(rows)
    result.index = pd.RangeIndex(len(result))  # a fresh frame: cheaper than reset_index's copy
    return result
