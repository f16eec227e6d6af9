"""`make bench-spark`: the platform's warehouse on Spark against bare Spark, side by side.

- Ingestion: a simulated day through `raw/events` on the cluster (the asset, its rules, its dead
  letters, its partition replace) against a bare `spark.read.json` of the same files into a
  table, alternating (goal: within 1.3x).
- Growth: the same ingestion over 1 and over 30 days in one run, on Spark and on DuckDB.
- dbt: the core layer through Dagster against a plain `dbt build --target spark` of the same
  selection on the same raw tables (goal: within 1.3x), as `make bench` compares on DuckDB.

Parts can be run alone by name: `python -m data_platform_tests.bench_spark ingestion`.

The cluster is the project's own (`SERVICES=spark`, started in a temporary home and stopped
afterwards), unless DATA_PLATFORM_SPARK_REMOTE names a running endpoint. The first Spark
statements of a session pay the JVM's warm-up, so each side runs once before it is timed.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

from data_platform_tests.bench import (
    QUIET,
    alternate,
    compare_dbt,
    events_job,
    report,
    simulated_home,
)
from data_platform_tests.helpers import run_services

END = date(2026, 1, 30)
DAY_EVENTS = 200_000
GROWTH_EVENTS = 20_000
DBT_EVENTS = 20_000


@contextmanager
def spark_endpoint(root: Path) -> Iterator[str]:
    """The Spark Connect URL to run on: the environment's, or the project's cluster started here."""
    remote = os.environ.get("DATA_PLATFORM_SPARK_REMOTE")
    if remote:
        yield remote
        return
    env = {**os.environ, "SERVICES": "spark", "DATA_PLATFORM_HOME": str(root / "services")}
    started = time.perf_counter()
    up = run_services(env, "up", timeout=600)
    if up.returncode != 0:
        raise SystemExit(f"bench-spark: the Spark cluster did not start: {up.stderr.strip()}")
    print(f"spark cluster up in {time.perf_counter() - started:.0f} s")
    try:
        remote = run_services(env, "env").stdout
        yield next(
            line.split("=", 1)[1].strip("'\"")
            for line in remote.splitlines()
            if "DATA_PLATFORM_SPARK_REMOTE=" in line
        )
    finally:
        run_services(env, "down")


def on_spark(env: dict[str, str], remote: str) -> dict[str, str]:
    """`env` with the warehouse on the Spark cluster at `remote`."""
    return {**env, "DATA_PLATFORM_ENGINE": "spark", "DATA_PLATFORM_SPARK_REMOTE": remote}


def run_days(job, instance, days: int) -> float:
    """Seconds of one run of raw/events over the last `days` days (a single-run backfill)."""
    from data_platform.partitions import RANGE_TAGS

    first = END - timedelta(days=days - 1)
    tags = dict(zip(RANGE_TAGS, (first.isoformat(), END.isoformat()), strict=True))
    began = time.perf_counter()
    assert job.execute_in_process(instance=instance, tags=tags, run_config=QUIET).success
    return time.perf_counter() - began


def bench_spark_ingestion(root: Path, remote: str) -> None:
    import dagster as dg
    from pyspark.sql.connect.session import SparkSession

    from data_platform.settings import load_settings

    env = simulated_home(root / "day", days=1, events_per_day=DAY_EVENTS, end=END)
    job = events_job(load_settings(on_spark(env, remote)))
    instance = dg.DagsterInstance.ephemeral()
    folder = root / "day" / "landing" / "events" / f"dt={END}"
    files = sorted(str(p) for p in folder.iterdir())
    spark = SparkSession.builder.remote(remote).create()

    def bare() -> None:
        spark.read.json(files).write.mode("overwrite").saveAsTable("default.bench_bare_events")

    def ours() -> None:
        run_days(job, instance, 1)

    bare()
    ours()  # warm-up of both sides: the JVM's first statements
    bare_s, ours_s = alternate(bare, ours)
    ratio = ours_s / bare_s
    report(
        f"Spark: ingest {DAY_EVENTS:,} events, simulated day ({len(files)} files)",
        ours_s,
        bare_s,
        f"{ratio:.2f}x a bare spark.read.json into a table (goal <= 1.3x)",
        ratio <= 1.3,
    )
    spark.sql("DROP TABLE IF EXISTS default.bench_bare_events")
    spark.stop()


def bench_growth(root: Path, remote: str) -> None:
    import dagster as dg

    from data_platform.settings import load_settings

    env = simulated_home(root / "month", days=30, events_per_day=GROWTH_EVENTS, end=END)
    for engine, engine_env in (("duckdb", env), ("spark", on_spark(env, remote))):
        job, instance = events_job(load_settings(engine_env)), dg.DagsterInstance.ephemeral()
        run_days(job, instance, 1)  # warm-up
        one, thirty = run_days(job, instance, 1), run_days(job, instance, 30)
        print(
            f"{engine}: raw/events, 1 day {one:.1f} s, 30 days in one run {thirty:.1f} s "
            f"({thirty / one:.1f}x for 30x the data, {GROWTH_EVENTS:,} events a day)"
        )


def bench_spark_dbt(root: Path, remote: str) -> None:
    env = simulated_home(root / "dbt", days=3, events_per_day=DBT_EVENTS)
    compare_dbt(on_spark(env, remote), "Spark: dbt core layer", goal=1.3, issue=10)


PARTS = {"ingestion": bench_spark_ingestion, "dbt": bench_spark_dbt, "growth": bench_growth}


def main(argv: list[str]) -> None:
    """Every part, or those named (`python -m data_platform_tests.bench_spark ingestion`)."""
    import logging

    unknown = set(argv) - set(PARTS)
    if unknown:
        raise SystemExit(f"bench-spark: no part {sorted(unknown)}; parts: {', '.join(PARTS)}")
    logging.getLogger("dagster").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        root = Path(tmp)
        with spark_endpoint(root) as remote:
            for name, part in PARTS.items():
                if not argv or name in argv:
                    part(root, remote)
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
