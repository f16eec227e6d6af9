"""The source simulator behind `data-platform simulate` (the contracts: README.md, "The raw
layer", and data_platform/ingestion/tables.py).

It writes the three sources of an e-commerce shop, deterministically from a seed: the
application database (users, products, orders, order_items), JSON-lines event files and
payments CSV exports in the landing zone, with a configurable rate of every defect the
contract names. `simulate` builds days of history; `append_day` moves the world on by a day.
"""

from data_platform.simulator.config import SimulationConfig, SimulationError
from data_platform.simulator.event_records import EVENT_DEFECTS
from data_platform.simulator.payments import PAYMENT_DEFECTS
from data_platform.simulator.runner import append_day, simulate
from data_platform.simulator.summary import FileReport, PartitionReport, SimulationSummary

__all__ = [
    "EVENT_DEFECTS",
    "PAYMENT_DEFECTS",
    "FileReport",
    "PartitionReport",
    "SimulationConfig",
    "SimulationError",
    "SimulationSummary",
    "append_day",
    "simulate",
]
