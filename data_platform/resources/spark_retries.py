"""How long a Spark Connect client waits for an endpoint that does not answer.

pyspark retries such an endpoint for 10 minutes, silent all along: a step on a cluster that
went away looked hung for 10 minutes before it failed. Every session of the platform waits
DATA_PLATFORM_SPARK_RETRY_SECONDS instead (60 by default: a cluster still starting, a blip),
dbt-spark's too, which dbt makes in its own process (`data-platform-dbt`, resources/dbt_guard).

This module imports pyspark only when a policy is asked for: dbt's process on DuckDB and the
Definitions never load it.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

from data_platform.settings import SPARK_RETRY_SECONDS, SPARK_RETRY_SECONDS_VARIABLE

if TYPE_CHECKING:
    from pyspark.sql.connect.client.retries import DefaultPolicy

# pyspark's backoff: 50 ms, four times longer at each retry, here at most 10 s.
INITIAL_BACKOFF_MS = 50
BACKOFF_MULTIPLIER = 4
MAX_BACKOFF_MS = 10_000


def retries_within(seconds: float) -> int:
    """The fewest retries whose backoffs add up to `seconds` (10 for 60 s: 64 s of waits).

    Counted only while the backoff grows, then divided: a loop over every retry computed
    4**retries each time, 26 s of CPU for DATA_PLATFORM_SPARK_RETRY_SECONDS=1000000 (11 days)
    before a step's session was even opened, and never ended for larger values."""
    target_ms = seconds * 1000
    waited_ms, retries = 0, 0
    while waited_ms < target_ms:
        backoff = INITIAL_BACKOFF_MS * BACKOFF_MULTIPLIER**retries
        if backoff >= MAX_BACKOFF_MS:  # every retry from here waits the cap
            return retries + math.ceil((target_ms - waited_ms) / MAX_BACKOFF_MS)
        waited_ms += backoff
        retries += 1
    return retries


def retry_policy(seconds: float) -> DefaultPolicy:
    """pyspark's default policy (which errors it retries, its jitter), waiting about `seconds`."""
    from pyspark.sql.connect.client.retries import DefaultPolicy

    return DefaultPolicy(
        max_retries=retries_within(seconds),
        initial_backoff=INITIAL_BACKOFF_MS,
        backoff_multiplier=BACKOFF_MULTIPLIER,
        max_backoff=MAX_BACKOFF_MS,
    )


def bound_every_client() -> None:
    """Every Spark Connect client this process makes from now on waits as long as the
    environment's DATA_PLATFORM_SPARK_RETRY_SECONDS says: dbt-spark makes its session where no
    code of the platform can reach it, and pyspark's session builder takes no policy."""
    from pyspark.sql.connect.client import core

    seconds = float(os.environ.get(SPARK_RETRY_SECONDS_VARIABLE) or SPARK_RETRY_SECONDS)
    make = core.SparkConnectClient.__init__

    def make_bounded(client: core.SparkConnectClient, *args: object, **kwargs: object) -> None:
        make(client, *args, **kwargs)
        client.set_retry_policies([retry_policy(seconds)])

    core.SparkConnectClient.__init__ = make_bounded  # type: ignore[method-assign]
