"""The world before the first simulated day: a customer base and a product catalogue.

Names and e-mail domains are invented (reserved `example` domains), so nothing resembles a
real person's address; the shapes (weighted countries, category price bands, .99 prices) are
what downstream models and checks need to look realistic.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from data_platform.simulator import rng as rngs
from data_platform.simulator.clock import DAY_MS, day_start_ms
from data_platform.simulator.world import World, empty_frame, typed

FIRST_NAMES = (
    "Anna", "Ben", "Clara", "David", "Elif", "Finn", "Greta", "Hugo", "Ines", "Jonas", "Kira",
    "Lars", "Mila", "Noah", "Olga", "Paul", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wim",
    "Yara", "Zoe", "Luca", "Nina", "Omar", "Lena", "Marco", "Sofia",
)  # fmt: skip
LAST_NAMES = (
    "Berg", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hansen", "Jansen", "Kowalski",
    "Lopez", "Martin", "Novak", "Olsen", "Peeters", "Rossi", "Schmidt", "Smith", "Taylor",
    "Visser", "Weber", "Young", "Moreau", "Nowak", "Bianchi", "Keller",
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")
COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "GB", "US", "PL", "SE", "BE", "AT")
COUNTRY_WEIGHTS = (0.22, 0.13, 0.08, 0.08, 0.08, 0.10, 0.15, 0.05, 0.04, 0.04, 0.03)

# category -> (nouns, low price, high price) in whole currency units
CATEGORIES: dict[str, tuple[tuple[str, ...], float, float]] = {
    "electronics": (("Headphones", "Speaker", "Charger", "Keyboard", "Mouse", "Monitor"), 15, 400),
    "books": (("Novel", "Cookbook", "Atlas", "Field Guide", "Poetry Collection"), 8, 45),
    "home": (("Lamp", "Mug Set", "Blanket", "Vase", "Cutting Board"), 10, 120),
    "sports": (("Yoga Mat", "Dumbbell", "Water Bottle", "Running Shoes"), 10, 150),
    "toys": (("Puzzle", "Robot Kit", "Plush Bear", "Board Game"), 8, 80),
    "beauty": (("Face Cream", "Shampoo", "Perfume", "Lip Balm"), 6, 90),
}
ADJECTIVES = ("Classic", "Eco", "Pro", "Mini", "Deluxe", "Smart", "Urban", "Nordic")
HISTORY_DAYS = 365


def initial_world(seed: int, n_users: int, n_products: int, first_day: date) -> World:
    """Users who signed up during the year before `first_day`, and the catalogue at that time."""
    rng = rngs.stream(seed, first_day, "world")
    return World(
        users=initial_users(rng, n_users, day_start_ms(first_day)),
        products=initial_products(rng, n_products, day_start_ms(first_day)),
        orders=empty_frame("orders"),
        order_items=empty_frame("order_items"),
    )


def new_people(rng: np.random.Generator, ids: np.ndarray) -> pd.DataFrame:
    """Names, e-mail addresses and countries for new users with these ids."""
    first = rng.choice(FIRST_NAMES, len(ids))
    last = rng.choice(LAST_NAMES, len(ids))
    domain = rng.choice(EMAIL_DOMAINS, len(ids))
    country = rng.choice(COUNTRIES, len(ids), p=COUNTRY_WEIGHTS)
    local = pd.Series(first).str.lower() + "." + pd.Series(last).str.lower()
    return pd.DataFrame(
        {
            "id": ids,
            "email": local + pd.Series(ids).astype(str) + "@" + pd.Series(domain),
            "full_name": pd.Series(first) + " " + pd.Series(last),
            "country": country,
        }
    )


def initial_users(rng: np.random.Generator, n_users: int, first_ms: int) -> pd.DataFrame:
    created = np.sort(first_ms - rng.integers(1, HISTORY_DAYS * DAY_MS, n_users))
    people = new_people(rng, np.arange(1, n_users + 1))
    people["created_at"] = created
    people["updated_at"] = created
    people["deleted_at"] = pd.array([pd.NA] * n_users, dtype="Int64")
    return typed("users", people)


def price_cents(rng: np.random.Generator, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Shop-style prices: log-uniform in the band, ending in .99."""
    units = np.exp(rng.uniform(np.log(low), np.log(high)))
    return np.floor(units).astype(np.int64) * 100 + 99


def initial_products(rng: np.random.Generator, n_products: int, first_ms: int) -> pd.DataFrame:
    names = list(CATEGORIES)
    category = rng.choice(names, n_products)
    bands = np.array([CATEGORIES[c][1:] for c in category], dtype=np.float64).reshape(-1, 2)
    nouns = [
        CATEGORIES[c][0][k % len(CATEGORIES[c][0])]
        for c, k in zip(category, rng.integers(0, 1000, n_products), strict=True)
    ]
    adjectives = rng.choice(ADJECTIVES, n_products)
    ids = np.arange(1, n_products + 1)
    frame = pd.DataFrame(
        {
            "id": ids,
            "sku": [f"{c[:3].upper()}-{i:05d}" for c, i in zip(category, ids, strict=True)],
            "name": [f"{a} {n}" for a, n in zip(adjectives, nouns, strict=True)],
            "category": category,
            "price_cents": price_cents(rng, bands[:, 0], bands[:, 1]),
            "updated_at": first_ms - rng.integers(DAY_MS, 60 * DAY_MS, n_products),
        }
    )
    return typed("products", frame)
