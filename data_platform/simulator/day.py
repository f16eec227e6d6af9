"""One simulated day: what changes in the application database and which files arrive.

The order inside a day mirrors a shop's night and day: a pricing job re-prices products after
midnight, accounts change, orders placed on earlier days move on (and are refunded), visitors
sign up and browse, purchases become orders, the payment provider records attempts. The day is
a pure function of (config, world before the day, day): simulate and append_day share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from data_platform.simulator import rng as rngs
from data_platform.simulator.catalog import new_people
from data_platform.simulator.changes import (
    active_user_ids,
    price_changes,
    signup_count,
    user_changes,
)
from data_platform.simulator.clock import day_start_ms
from data_platform.simulator.config import SimulationConfig
from data_platform.simulator.event_files import plan_event_files, plan_late_file
from data_platform.simulator.event_records import clean_columns
from data_platform.simulator.files import RenderJob, combine
from data_platform.simulator.orders import checkout_payments, currency_codes, order_transitions
from data_platform.simulator.payments import plan_payment_files
from data_platform.simulator.purchases import purchases
from data_platform.simulator.sessions import Population, Visits, simulate_visits
from data_platform.simulator.world import TableChanges, World, empty_frame, typed

# From a history's third day on, each day's folder also gets a late file with the events of
# LATE_FILE_DELAY before (event_files.py); the first LATE_FILE_DELAY days get none, as nothing
# was simulated before the first.
LATE_FILE_DELAY = timedelta(days=2)
LATE_FILE_SHARE = 50  # a late file holds events_per_day // 50 events


@dataclass
class DayResult:
    day: date
    world: World  # after the day
    jobs: list[RenderJob] = field(default_factory=list)
    n_orders: int = 0
    n_payments: int = 0
    _changes: dict[str, list[TableChanges]] = field(default_factory=dict)

    def record(self, table: str, change: TableChanges) -> None:
        """Apply a change to the world and remember it for the database."""
        self.world = self.world.apply({table: change})
        self._changes.setdefault(table, []).append(change)

    @property
    def changes(self) -> dict[str, TableChanges]:
        """Everything the day inserted and updated, per table."""
        return {
            table: TableChanges(
                typed(table, pd.concat([c.inserted for c in changes], ignore_index=True)),
                typed(table, pd.concat([c.updated for c in changes], ignore_index=True)),
            )
            for table, changes in self._changes.items()
        }


def population(seed: int, world: World, day_ms: int) -> Population:
    """Active users and all products, with heavy-tailed activity and popularity weights."""
    users = active_user_ids(world.users, day_ms)
    if len(users) == 0:  # a tiny world whose every account is deleted still has visitors
        users = world.users["id"].to_numpy(dtype=np.int64)
    products = world.products["id"].to_numpy(dtype=np.int64)
    return Population(
        user_ids=users,
        user_weights=1.0 / (rngs.key_uniform(seed, users, salt=3) + 0.05),
        product_ids=products,
        product_weights=1.0 / (rngs.key_uniform(seed, products, salt=4) + 0.02),
    )


def simulate_day(config: SimulationConfig, world: World, day: date, first_day: date) -> DayResult:
    seed, day_ms = config.seed, day_start_ms(day)
    result = DayResult(day=day, world=world)
    result.record(
        "products", price_changes(rngs.stream(seed, day, "products"), world.products, day_ms)
    )
    users_rng = rngs.stream(seed, day, "users")
    result.record("users", user_changes(users_rng, world.users, day_ms))
    moved, refunds = order_transitions(rngs.stream(seed, day, "orders"), world, day_ms)
    result.record("orders", moved)

    n_signups = min(signup_count(users_rng, len(world.users)), config.events_per_day // 20)
    new_ids = result.world.next_id("users") + np.arange(n_signups, dtype=np.int64)
    sessions_rng = rngs.stream(seed, day, "sessions")
    visits = simulate_visits(
        sessions_rng, population(seed, result.world, day_ms), day_ms, config.events_per_day, new_ids
    )
    result.record(
        "users", TableChanges(_signed_up(users_rng, new_ids, visits), empty_frame("users"))
    )
    bought = purchases(
        visits,
        result.world.products,
        result.world.next_id("orders"),
        result.world.next_id("order_items"),
    )
    result.record("orders", TableChanges(bought.orders, empty_frame("orders")))
    result.record("order_items", TableChanges(bought.order_items, empty_frame("order_items")))

    currency = currency_codes(result.world, visits.session_user)
    columns = clean_columns(
        sessions_rng, visits, bought.event_amount_cents, bought.event_order_id, currency
    )
    payments_rng = rngs.stream(seed, day, "payments")
    paid = checkout_payments(payments_rng, result.world, bought.orders, day_ms)
    payments = pd.concat([paid, refunds], ignore_index=True)
    event_jobs = [
        plan_event_files(rngs.stream(seed, day, "event_defects"), day, columns, config.defect_rate)
    ]
    if day - LATE_FILE_DELAY >= first_day:
        event_jobs.append(_late_file(config, result.world, day, day - LATE_FILE_DELAY))
    result.jobs.append(combine(event_jobs))
    result.jobs.append(
        plan_payment_files(
            rngs.stream(seed, day, "payment_defects"), seed, day, payments, config.defect_rate
        )
    )
    result.n_orders, result.n_payments = len(bought.orders), len(payments)
    return result


def _signed_up(rng: np.random.Generator, new_ids: np.ndarray, visits: Visits) -> pd.DataFrame:
    """New users; each one's created_at is the start of their signup session."""
    n = len(new_ids)
    created = pd.Series(visits.session_start[:n], index=visits.session_user[:n]).reindex(new_ids)
    people = new_people(rng, new_ids)
    people["created_at"] = created.to_numpy(dtype=np.int64)
    people["updated_at"] = people["created_at"]
    people["deleted_at"] = pd.array([pd.NA] * n, dtype="Int64")
    return typed("users", people)


def _late_file(config: SimulationConfig, world: World, arrival: date, event_day: date) -> RenderJob:
    """Browsing events of `event_day` that a client uploaded only on day `arrival`, filed
    under `arrival`. Seeded by the arrival day, which writes it, so simulate and append_day
    draw the same file."""
    rng = rngs.stream(config.seed, arrival, "late_events")
    event_ms = day_start_ms(event_day)
    n_events = max(1, config.events_per_day // LATE_FILE_SHARE)
    visits = simulate_visits(
        rng,
        population(config.seed, world, event_ms),
        event_ms,
        n_events,
        np.zeros(0, np.int64),
        True,
    )
    none = np.zeros(n_events, dtype=np.int64)
    currency = np.zeros(len(visits.session_start), dtype=np.int64)
    columns = clean_columns(rng, visits, none - 1, none, currency)
    defects_rng = rngs.stream(config.seed, arrival, "late_defects")
    return plan_late_file(defects_rng, arrival, event_day, columns, config.defect_rate)
