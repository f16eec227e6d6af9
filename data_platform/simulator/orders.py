"""Order life cycles and the payments they cause.

pending -> completed | cancelled, and completed -> refunded within 30 days. Whether an order's
payment went through is a stateless hash of the order id: the day an order is placed and
every later day agree on it without storing anything outside the application's own tables, so
an order whose payment failed is cancelled the next day, and a paid order that is cancelled or
refunded gets a `refunded` payment of its full amount.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_platform.simulator import rng as rngs
from data_platform.simulator.clock import DAY_MS
from data_platform.simulator.world import TableChanges, World, empty_frame, typed

CURRENCIES = ("EUR", "USD", "GBP")
PAYMENT_STATUSES = ("succeeded", "failed", "refunded")
SUCCEEDED, FAILED, REFUNDED = range(3)
FIRST_ATTEMPT_FAILS = 0.08
RETRY_SUCCEEDS = 0.6
COMPLETE_PER_DAY = 0.80
CANCEL_PER_DAY = 0.04
REFUND_PER_DAY = 0.015
REFUND_WINDOW_MS = 30 * DAY_MS
# Not the simulation's seed: nothing in the application's tables records the seed a world was
# built with, and `append_day` takes its seed from the command line (default 42), so an outcome
# keyed on the seed changed under orders placed before: completed orders whose every payment
# failed, cancelled ones whose successful payment was never refunded.
OUTCOME_SEED = 0


def payment_outcome(order_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first attempt failed, retry succeeded) per order: fixed forever by the order's id."""
    first_failed = rngs.key_uniform(OUTCOME_SEED, order_ids, salt=1) < FIRST_ATTEMPT_FAILS
    retry_ok = rngs.key_uniform(OUTCOME_SEED, order_ids, salt=2) < RETRY_SUCCEEDS
    return first_failed, retry_ok


def is_paid(order_ids: np.ndarray) -> np.ndarray:
    first_failed, retry_ok = payment_outcome(order_ids)
    return ~first_failed | retry_ok


def payment_rows(
    rng: np.random.Generator,
    order_ids: np.ndarray,
    amounts: np.ndarray,
    currencies: np.ndarray,
    statuses: np.ndarray,
    created_ms: np.ndarray,
) -> pd.DataFrame:
    """Payments as columns; ids are two random 63-bit numbers rendered as hex."""
    n = len(order_ids)
    return pd.DataFrame(
        {
            "pid_a": rng.integers(0, 1 << 62, n),
            "pid_b": rng.integers(0, 1 << 62, n),
            "order_id": np.asarray(order_ids, dtype=np.int64),
            "amount_cents": np.asarray(amounts, dtype=np.int64),
            "currency": np.asarray(currencies, dtype=np.int64),
            "status": np.asarray(statuses, dtype=np.int64),
            "created_ms": np.asarray(created_ms, dtype=np.int64),
        }
    )


def currency_codes(world: World, user_ids: np.ndarray) -> np.ndarray:
    names = world.currency_of_users(np.asarray(user_ids, dtype=np.int64))
    return pd.Series(names).map({c: i for i, c in enumerate(CURRENCIES)}).to_numpy(np.int64)


def checkout_payments(
    rng: np.random.Generator, world: World, orders: pd.DataFrame, day_ms: int
) -> pd.DataFrame:
    """A first attempt seconds after each order; a retry minutes after a failed one."""
    ids = orders["id"].to_numpy(dtype=np.int64)
    totals = world.order_totals(ids)
    currency = currency_codes(world, orders["user_id"].to_numpy())
    first_failed, retry_ok = payment_outcome(ids)
    first_at = orders["ordered_at"].to_numpy(dtype=np.int64) + rng.integers(1_000, 20_000, len(ids))
    retry_at = first_at + rng.integers(60_000, 900_000, len(ids))
    retry = np.flatnonzero(first_failed)
    created = np.minimum(np.r_[first_at, retry_at[retry]], day_ms + DAY_MS - 1)
    statuses = np.r_[
        np.where(first_failed, FAILED, SUCCEEDED), np.where(retry_ok[retry], SUCCEEDED, FAILED)
    ]
    return payment_rows(
        rng,
        np.r_[ids, ids[retry]],
        np.r_[totals, totals[retry]],
        np.r_[currency, currency[retry]],
        statuses,
        created,
    )


def next_statuses(rng: np.random.Generator, orders: pd.DataFrame, day_ms: int) -> pd.DataFrame:
    """Orders placed before the day whose status changes during it, with the new status."""
    ordered_at, status = orders["ordered_at"].to_numpy(), orders["status"].to_numpy()
    before = ordered_at < day_ms
    pending = orders[before & (status == "pending")]
    recent = ordered_at >= day_ms - REFUND_WINDOW_MS
    completed = orders[before & recent & (status == "completed")]
    u_pending, u_completed = rng.random(len(pending)), rng.random(len(completed))
    paid = is_paid(pending["id"].to_numpy(dtype=np.int64))
    upcoming = np.select(
        [~paid, u_pending < COMPLETE_PER_DAY, u_pending < COMPLETE_PER_DAY + CANCEL_PER_DAY],
        ["cancelled", "completed", "cancelled"],
        "pending",
    )
    parts = [
        part
        for part in (
            pending.assign(status=upcoming)[upcoming != "pending"],
            completed[u_completed < REFUND_PER_DAY].assign(status="refunded"),
        )
        if len(part)
    ]
    return typed("orders", pd.concat(parts).sort_values("id")) if parts else empty_frame("orders")


def refund_payments(rng: np.random.Generator, world: World, changed: pd.DataFrame) -> pd.DataFrame:
    """A `refunded` payment for every paid order that is cancelled or refunded."""
    ids = changed["id"].to_numpy(dtype=np.int64)
    status = changed["status"].to_numpy()
    owed = (status == "refunded") | ((status == "cancelled") & is_paid(ids))
    return payment_rows(
        rng,
        ids[owed],
        world.order_totals(ids[owed]),
        currency_codes(world, changed["user_id"].to_numpy()[owed]),
        np.full(int(owed.sum()), REFUNDED),
        changed["updated_at"].to_numpy(dtype=np.int64)[owed],
    )


def order_transitions(
    rng: np.random.Generator, world: World, day_ms: int
) -> tuple[TableChanges, pd.DataFrame]:
    """Status changes of earlier orders during the day, and the refund payments they cause."""
    changed = next_statuses(rng, world.orders, day_ms)
    changed["updated_at"] = day_ms + rng.integers(0, DAY_MS, len(changed))
    refunds = refund_payments(rng, world, changed)
    return TableChanges(empty_frame("orders"), changed), refunds
