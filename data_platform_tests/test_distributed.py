"""Distributed mode end to end: the instance on PostgreSQL, steps on two Celery workers over Redis.

The same simulated world is built embedded (`data-platform materialize`: SQLite instance, steps
in the run's process) and distributed, and every mart must come out the same, table by table.
Then two backfills and a Celery-executed run write the warehouse at once: the `duckdb` pool
must serialise them across processes and workers, with nothing lost or loaded twice.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest

from data_platform_tests.landed_records import read_landed

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("data-platform"))
FIRST, LAST = date(2026, 1, 1), date(2026, 1, 2)
SIMULATION = ["--seed", "11", "--days", "2", "--end-date", str(LAST), "--users", "30"]
SIMULATION += ["--products", "15", "--events-per-day", "200"]
RUN_TIMEOUT = 900

# Runs the whole graph for a date range through the Definitions' own executor (Celery here):
# `dg.materialize` always executes in-process, so this takes the reconstructable route that a
# run launched from the UI or a sensor takes. Prints what the test checks, as JSON.
CELERY_RUN = """
import json, sys
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
from data_platform.materialize import range_tags

repo = ReconstructableRepository.for_module("data_platform.definitions", "defs", sys.argv[3])
job = repo.get_reconstructable_job("__ASSET_JOB")
with dg.DagsterInstance.get() as instance:
    result = dg.execute_job(
        job, instance=instance, tags=range_tags([sys.argv[1], sys.argv[2]]), raise_on_error=False
    )
    graph = job.get_definition().graph
    steps, workers = {}, set()
    for record in instance.all_logs(result.run_id):
        event = record.dagster_event
        if event is None or record.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            steps[record.step_key] = {
                "start": record.timestamp,
                "pool": graph.node_named(record.step_key.split("[")[0]).definition.pool,
            }
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            steps[record.step_key]["end"] = record.timestamp
        elif event.event_type_value == "ENGINE_EVENT" and event.engine_event_data:
            worker = event.engine_event_data.metadata.get("Celery worker")
            if worker is not None:
                workers.add(worker.value)
print(json.dumps({"success": result.success, "steps": steps, "workers": sorted(workers)}))
"""


def run(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen) -> tuple[str, str]:
    out, err = process.communicate(timeout=RUN_TIMEOUT)
    assert process.returncode == 0, (
        f"{process.args[:3]} exited {process.returncode}:\n{err[-3000:]}"
    )
    assert "Could not set lock" not in out + err
    return out, err


def materialize(env: dict[str, str], first: date, last: date) -> subprocess.Popen:
    return run([CLI, "materialize", "--start", str(first), "--end", str(last)], env)


def celery_run(env: dict[str, str], first: date, last: date) -> subprocess.Popen:
    return run([sys.executable, "-c", CELERY_RUN, str(first), str(last), str(REPO)], env)


def table_names(warehouse: Path, schema: str) -> list[str]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY 1",
            [schema],
        ).fetchall()
    return [name for (name,) in rows]


# When a row was loaded says when the build ran, not what the sources said: left out.
LOAD_TIME_COLUMNS = {"loaded_at", "_loaded_at", "extracted_at", "_extracted_at"}


def differences(left: Path, right: Path, schema: str, table: str) -> tuple[int, int, int]:
    """Rows of the table in each warehouse, and rows in one and not the other (as multisets)."""
    with duckdb.connect() as conn:
        conn.execute(f"ATTACH '{left}' AS l (READ_ONLY)")
        conn.execute(f"ATTACH '{right}' AS r (READ_ONLY)")
        columns = [
            f'"{name}"'
            for (name,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_catalog = 'l' "
                "AND table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [schema, table],
            ).fetchall()
            if name not in LOAD_TIME_COLUMNS
        ]
        select = ", ".join(columns)
        l_rows, r_rows = (
            f"SELECT {select} FROM l.{schema}.{table}",
            f"SELECT {select} FROM r.{schema}.{table}",
        )
        (count_l,) = conn.execute(f"SELECT count(*) FROM ({l_rows})").fetchone()
        (count_r,) = conn.execute(f"SELECT count(*) FROM ({r_rows})").fetchone()
        (diff,) = conn.execute(
            f"SELECT count(*) FROM (({l_rows} EXCEPT ALL {r_rows}) "
            f"UNION ALL ({r_rows} EXCEPT ALL {l_rows}))"
        ).fetchone()
    return count_l, count_r, diff


def assert_same_marts(embedded: Path, distributed: Path) -> None:
    marts = table_names(embedded, "marts")
    assert "daily_revenue" in marts and "dim_customers" in marts
    assert table_names(distributed, "marts") == marts
    for table in marts:
        count_e, count_d, diff = differences(embedded, distributed, "marts", table)
        assert (count_d, diff) == (count_e, 0), f"marts.{table}: {count_e} vs {count_d} rows"
        assert count_e > 0, f"marts.{table} is empty: the comparison proves nothing"


def assert_conserved(env: dict[str, str], warehouse: Path) -> None:
    """Records in the landing files (read by plain Python) = raw rows + dead letters, per dt."""
    landing = Path(env["DATA_PLATFORM_HOME"]) / "landing"
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        for source in ("events", "payments"):
            expected = read_landed(landing, source).records
            stored = dict(
                conn.execute(
                    f"SELECT dt, sum(n) FROM (SELECT dt, count(*) n FROM raw.{source} GROUP BY dt "
                    "UNION ALL SELECT dt, count(*) FROM raw.dead_letter WHERE source = ? "
                    "GROUP BY dt) GROUP BY dt",
                    [source],
                ).fetchall()
            )
            assert {dt: int(n) for dt, n in stored.items()} == dict(expected), source


@pytest.fixture(scope="module")
def world(distributed_stack, tmp_path_factory) -> dict[str, Path]:
    """The simulated sources, and the warehouse `data-platform materialize` builds embedded."""
    home = Path(distributed_stack["DATA_PLATFORM_HOME"])
    simulated = subprocess.run(
        [CLI, "simulate", "--quiet", *SIMULATION], env=distributed_stack, capture_output=True
    )
    assert simulated.returncode == 0, simulated.stderr
    embedded_home = tmp_path_factory.mktemp("embedded_home")
    (embedded_home / "dagster_home").mkdir()
    embedded_env = {
        **{k: v for k, v in distributed_stack.items() if not k.startswith("DAGSTER_")},
        "DATA_PLATFORM_HOME": str(embedded_home),
        "DAGSTER_HOME": str(embedded_home / "dagster_home"),
        "DATA_PLATFORM_EXECUTOR": "in_process",
        "DATA_PLATFORM_LANDING": str(home / "landing"),
        "DATA_PLATFORM_SOURCE_DB_URL": f"sqlite:///{home / 'source.db'}",
    }
    finish(materialize(embedded_env, FIRST, LAST))
    return {
        "embedded": embedded_home / "warehouse.duckdb",
        "distributed": home / "warehouse.duckdb",
    }


def test_the_world_built_on_celery_workers_equals_the_embedded_build(distributed_stack, world):
    assert distributed_stack["DATA_PLATFORM_EXECUTOR"] == "celery"
    out, _ = finish(celery_run(distributed_stack, FIRST, LAST))
    report = json.loads(out.splitlines()[-1])
    assert report["success"]
    # Both workers took steps, and every step ran on one of them.
    assert len(report["workers"]) == 2
    assert all(name.startswith("data-platform-") for name in report["workers"])
    # The `duckdb` pool (limit 1) held across the workers: no two warehouse steps overlapped.
    windows = sorted(
        (s["start"], s["end"]) for s in report["steps"].values() if s["pool"] == "duckdb"
    )
    assert len(windows) > 10
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(windows))
    assert_same_marts(world["embedded"], world["distributed"])
    assert_conserved(distributed_stack, world["distributed"])


def test_two_backfills_and_a_celery_run_at_once_lose_nothing(distributed_stack, world):
    """Overlapping windows on the PostgreSQL instance: each run replaces exactly its days."""
    os.remove(world["distributed"])
    runs = [
        materialize(distributed_stack, FIRST, LAST),
        materialize(distributed_stack, LAST, LAST),
        celery_run(distributed_stack, FIRST, FIRST),
    ]
    for process in runs:
        finish(process)
    assert_same_marts(world["embedded"], world["distributed"])
    assert_conserved(distributed_stack, world["distributed"])
