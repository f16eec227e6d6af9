"""The shop funnel as a sessions x stages matrix of event counts.

A session is a run of events by one user: (signup | login)? page_view+ product_view*
add_to_cart* remove_from_cart? checkout_started? purchase?. Each stage's count is drawn for all
sessions at once, with conversion rates a shop analyst would recognise (about 8% of sessions
buy); sessions.py expands the matrix into events.
"""

from __future__ import annotations

import numpy as np

STAGES = (
    "signup",
    "login",
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "checkout_started",
    "purchase",
)
SIGNUP, LOGIN, PAGE_VIEW, PRODUCT_VIEW, ADD_TO_CART, REMOVE_FROM_CART, CHECKOUT, PURCHASE = range(8)


def funnel_counts(rng: np.random.Generator, is_signup: np.ndarray, browse_only: bool) -> np.ndarray:
    """Sessions x stages: how many events of each stage each session has."""
    n = len(is_signup)
    u = rng.random((n, 6))
    counts = np.zeros((n, len(STAGES)), dtype=np.int64)
    counts[:, SIGNUP] = is_signup
    counts[:, LOGIN] = ~is_signup & (u[:, 0] < 0.35)
    counts[:, PAGE_VIEW] = rng.geometric(0.45, n)
    counts[:, PRODUCT_VIEW] = np.where(u[:, 1] < 0.6, rng.geometric(0.4, n), 0)
    adds = np.where((counts[:, PRODUCT_VIEW] > 0) & (u[:, 2] < 0.35), rng.geometric(0.6, n), 0)
    if browse_only:
        return counts
    checkout = (adds > 0) & (u[:, 3] < 0.55)
    counts[:, ADD_TO_CART] = adds
    # Removing the only item would leave nothing to check out.
    counts[:, REMOVE_FROM_CART] = (adds > 0) & (u[:, 5] < 0.2) & ((adds >= 2) | ~checkout)
    counts[:, CHECKOUT] = checkout
    counts[:, PURCHASE] = checkout & (u[:, 4] < 0.7)
    return counts


def draw_funnels(
    rng: np.random.Generator, n_signups: int, n_events: int, browse_only: bool
) -> np.ndarray:
    """Enough sessions for `n_events` events; the signup sessions come first and are all kept."""
    blocks: list[np.ndarray] = []
    total = 0
    while not blocks or total < n_events:
        size = max(64, (n_events - total) // 3 + 1) + (0 if blocks else n_signups)
        is_signup = np.zeros(size, dtype=bool)
        if not blocks:
            is_signup[:n_signups] = True
        blocks.append(funnel_counts(rng, is_signup, browse_only))
        total += int(blocks[-1].sum())
    counts = np.concatenate(blocks)
    ends = np.cumsum(counts.sum(axis=1))
    return counts[: max(int(np.searchsorted(ends, n_events)) + 1, n_signups)]
