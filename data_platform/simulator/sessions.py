"""A day of browsing as whole columns: who visits when, what they look at, what they add.

The funnel matrix (funnel.py) is expanded with `np.repeat` into one row per event, then every
column (session start, time between clicks, user, product) is drawn for all events at once:
a day of events costs a few numpy calls, never a Python loop per event or per session.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_platform.simulator.clock import DAY_MS, diurnal_offsets
from data_platform.simulator.funnel import (
    ADD_TO_CART,
    PAGE_VIEW,
    PRODUCT_VIEW,
    REMOVE_FROM_CART,
    SIGNUP,
    STAGES,
    draw_funnels,
)

PAGES = ("/", "/search", "/deals", "/category/electronics", "/category/books", "/account", "/help")
CHANNELS = ("organic", "ads", "referral", "social")
MEAN_GAP_MS = 40_000


@dataclass(frozen=True)
class Population:
    """Who can browse and what they look at, with relative activity and popularity weights."""

    user_ids: np.ndarray
    user_weights: np.ndarray
    product_ids: np.ndarray
    product_weights: np.ndarray


@dataclass(frozen=True)
class Visits:
    """One day's events in session order. Per event: the first block; per session: the second."""

    session: np.ndarray
    stage: np.ndarray
    occurred_ms: np.ndarray
    product_id: np.ndarray
    quantity: np.ndarray
    label: np.ndarray
    session_user: np.ndarray
    session_start: np.ndarray
    session_key: np.ndarray

    @property
    def user_id(self) -> np.ndarray:
        return self.session_user[self.session]


def simulate_visits(
    rng: np.random.Generator,
    population: Population,
    day_ms: int,
    n_events: int,
    new_user_ids: np.ndarray,
    browse_only: bool = False,
) -> Visits:
    """Exactly `n_events` events on the day starting at `day_ms`.

    The first sessions are the signups of `new_user_ids` (the ids are handed out in order of
    signup time); the others belong to existing users, drawn by activity weight.
    """
    n_signups = len(new_user_ids)
    counts = draw_funnels(rng, n_signups, n_events, browse_only)
    lengths = counts.sum(axis=1)
    starts = np.cumsum(lengths) - lengths
    kept = np.clip(n_events - starts, 0, lengths)
    stage = np.repeat(np.tile(np.arange(len(STAGES), dtype=np.int8), len(counts)), counts.ravel())
    stage = stage[:n_events]
    session = np.repeat(np.arange(len(counts)), kept)

    offsets, durations = _session_clock(rng, session, starts, kept)
    session_start = day_ms + _fit_in_day(diurnal_offsets(rng, len(counts)), durations)
    session_user = _session_users(rng, population, new_user_ids, session_start)
    stage_first = starts[:, None] + np.cumsum(counts, axis=1) - counts
    product_id = _products(rng, population, session, stage, stage_first, counts)
    quantity = np.where(
        stage == ADD_TO_CART, rng.choice([1, 2, 3], n_events, p=[0.85, 0.12, 0.03]), 0
    )
    label = np.where(stage == SIGNUP, rng.integers(0, len(CHANNELS), n_events), 0)
    label = np.where(stage == PAGE_VIEW, rng.integers(0, len(PAGES), n_events), label)
    return Visits(
        session=session,
        stage=stage,
        occurred_ms=session_start[session] + offsets,
        product_id=product_id,
        quantity=quantity.astype(np.int64),
        label=label.astype(np.int64),
        session_user=session_user,
        session_start=session_start,
        session_key=rng.integers(1, 1 << 62, len(counts)),
    )


def _fit_in_day(start: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """Sessions that would run past midnight end at their drawn time instead of starting there."""
    overflowing = start + durations >= DAY_MS
    return np.clip(np.where(overflowing, start - durations, start), 0, DAY_MS - 1 - durations)


def _session_clock(
    rng: np.random.Generator, session: np.ndarray, starts: np.ndarray, kept: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per event: ms since its session began; per session: its duration."""
    gaps = 500 + rng.exponential(MEAN_GAP_MS, len(session)).astype(np.int64)
    clock = np.cumsum(gaps)
    offsets = clock - clock[starts[session]] if len(session) else clock
    present = kept > 0
    durations = np.zeros(len(starts), dtype=np.int64)
    last = starts[present] + kept[present] - 1
    durations[present] = clock[last] - clock[starts[present]]
    return offsets, durations


def _session_users(
    rng: np.random.Generator, population: Population, new_ids: np.ndarray, start: np.ndarray
) -> np.ndarray:
    n_signups = len(new_ids)
    users = np.empty(len(start), dtype=np.int64)
    # New ids are handed out in signup-time order, like an auto-increment key.
    users[:n_signups] = new_ids[np.argsort(np.argsort(start[:n_signups], kind="stable"))]
    weights = population.user_weights / population.user_weights.sum()
    users[n_signups:] = rng.choice(population.user_ids, len(start) - n_signups, p=weights)
    return users


def _products(
    rng: np.random.Generator,
    population: Population,
    session: np.ndarray,
    stage: np.ndarray,
    stage_first: np.ndarray,
    counts: np.ndarray,
) -> np.ndarray:
    """Viewed products by popularity; carts hold viewed products; a removal undoes the first add."""
    weights = population.product_weights / population.product_weights.sum()
    product = np.zeros(len(stage), dtype=np.int64)
    viewed = np.flatnonzero(stage == PRODUCT_VIEW)
    product[viewed] = rng.choice(population.product_ids, len(viewed), p=weights)
    added = np.flatnonzero(stage == ADD_TO_CART)
    s = session[added]
    pick = (
        stage_first[s, PRODUCT_VIEW]
        + rng.integers(0, 1 << 30, len(added)) % counts[s, PRODUCT_VIEW]
    )
    product[added] = product[pick]
    removed = np.flatnonzero(stage == REMOVE_FROM_CART)
    product[removed] = product[stage_first[session[removed], ADD_TO_CART]]
    return product
