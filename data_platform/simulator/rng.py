"""Seeded randomness that does not depend on the order of work.

Each (seed, day, purpose) gets its own generator, so one day can be re-simulated alone
(`append_day`) and adding a kind of draw to one purpose never shifts the others. Facts that
must be the same on every later day (did this order's payment go through? how active is this
user?) come from a stateless hash of the row's id instead of from a stored column.
"""

from __future__ import annotations

from datetime import date

import numpy as np

PURPOSES = (
    "world",
    "users",
    "products",
    "orders",
    "sessions",
    "event_defects",
    "payments",
    "payment_defects",
    "late_events",
    "late_defects",
)

_MASK64 = (1 << 64) - 1


def stream(seed: int, day: date, purpose: str) -> np.random.Generator:
    """The generator for one purpose on one day."""
    entropy = [seed, day.toordinal(), PURPOSES.index(purpose)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def key_uniform(seed: int, keys: np.ndarray, salt: int) -> np.ndarray:
    """A uniform [0, 1) draw per key that depends only on (seed, key, salt)."""
    base = _splitmix64(np.array([(seed * 1_000_003 + salt) & _MASK64], dtype=np.uint64))
    mixed = _splitmix64(np.asarray(keys).astype(np.uint64) ^ base)
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)
