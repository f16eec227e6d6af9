"""`make bench`: a 30-day backfill of the whole graph, embedded vs distributed, same sources.

Both sides run `data-platform materialize` over the same simulated 30 days: embedded on a
SQLite instance with steps in the run's process; distributed on the services' PostgreSQL
instance with steps on the two Celery workers (started by `python -m data_platform.services
up`, what `make services-up` runs). Reports the time and the number of runs of each.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

from data_platform_tests.backfill_run import CLI, backfill
from data_platform_tests.conftest import _distributed_stack, embedded_twin, services_home

DAYS = 30
LAST = date(2026, 1, 30)
FIRST = LAST - timedelta(days=DAYS - 1)


@contextmanager
def _distributed_env():
    with services_home("bench_distributed_") as home:
        stack = _distributed_stack(home)
        env = next(stack)
        try:
            yield env
        finally:
            stack.close()


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp, _distributed_env() as env:
        # The distributed instance's dagster.yaml reads its PostgreSQL settings from env: here too.
        os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_PG")})
        subprocess.run(
            [CLI, "simulate", "--quiet", "--days", str(DAYS), "--end-date", str(LAST),
             "--users", "500", "--events-per-day", "2000"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        embedded = backfill(embedded_twin(env, Path(tmp) / "embedded"), FIRST, LAST)
        distributed = backfill(env, FIRST, LAST)
    return {
        "embedded_s": embedded.seconds,
        "embedded_runs": embedded.runs,
        "distributed_s": distributed.seconds,
        "distributed_runs": distributed.runs,
    }
