"""From carts to orders: what each checkout costs and which rows a purchase writes.

The cart of a session is its add_to_cart events minus the one a remove_from_cart undid, priced
at the day's catalogue price. A purchase event becomes an order with those items, so the events
(`properties.order_id`, `properties.amount`), the orders in the database and the payments agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from data_platform.simulator.funnel import ADD_TO_CART, CHECKOUT, PURCHASE, REMOVE_FROM_CART
from data_platform.simulator.sessions import Visits
from data_platform.simulator.world import typed


@dataclass(frozen=True)
class Purchases:
    orders: pd.DataFrame
    order_items: pd.DataFrame
    event_amount_cents: np.ndarray  # per event; -1 where the event carries no amount
    event_order_id: np.ndarray  # per event; 0 where the event is not a purchase


def cart_items(visits: Visits, products: pd.DataFrame) -> pd.DataFrame:
    """(session, product_id, quantity, price_cents) of every session that reached checkout."""
    added = np.flatnonzero(visits.stage == ADD_TO_CART)
    sessions = visits.session[added]
    first_add = np.r_[True, sessions[1:] != sessions[:-1]] if len(added) else sessions == 0
    undone = first_add & np.isin(sessions, visits.session[visits.stage == REMOVE_FROM_CART])
    checked_out = np.isin(sessions, visits.session[visits.stage == CHECKOUT])
    keep = added[checked_out & ~undone]
    lines = pd.DataFrame(
        {
            "session": visits.session[keep],
            "product_id": visits.product_id[keep],
            "quantity": visits.quantity[keep],
        }
    )
    items = lines.groupby(["session", "product_id"], as_index=False, sort=True)["quantity"].sum()
    prices = products.set_index("id")["price_cents"]
    items["price_cents"] = prices.reindex(items["product_id"]).to_numpy(dtype=np.int64)
    return items


def purchases(
    visits: Visits, products: pd.DataFrame, next_order_id: int, next_item_id: int
) -> Purchases:
    """Orders (pending) and their items for the day's purchase events, in time order."""
    items = cart_items(visits, products)
    totals = (items["quantity"] * items["price_cents"]).groupby(items["session"]).sum()
    n_events = len(visits.stage)
    amount = np.full(n_events, -1, dtype=np.int64)
    has_amount = np.flatnonzero((visits.stage == CHECKOUT) | (visits.stage == PURCHASE))
    amount[has_amount] = totals.reindex(visits.session[has_amount]).to_numpy(dtype=np.int64)

    bought = np.flatnonzero(visits.stage == PURCHASE)
    bought = bought[np.argsort(visits.occurred_ms[bought], kind="stable")]
    order_ids = next_order_id + np.arange(len(bought), dtype=np.int64)
    event_order = np.zeros(n_events, dtype=np.int64)
    event_order[bought] = order_ids
    ordered_at = visits.occurred_ms[bought]
    orders = pd.DataFrame(
        {
            "id": order_ids,
            "user_id": visits.user_id[bought],
            "status": "pending",
            "ordered_at": ordered_at,
            "updated_at": ordered_at,
        }
    )
    by_session = pd.DataFrame(
        {"session": visits.session[bought], "order_id": order_ids, "updated_at": ordered_at}
    )
    order_items = by_session.merge(items, on="session").sort_values(["order_id", "product_id"])
    order_items["id"] = next_item_id + np.arange(len(order_items), dtype=np.int64)
    return Purchases(
        orders=typed("orders", orders),
        order_items=typed("order_items", order_items),
        event_amount_cents=amount,
        event_order_id=event_order,
    )
