"""Test helpers that compute expectations independently of the platform's code."""

from __future__ import annotations

import gzip
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TypeVar

import dagster as dg
import duckdb
from sqlalchemy.engine import make_url

from data_platform.partitions import RANGE_TAGS
from data_platform.resources.landing import LandingZone
from data_platform.services.config import load_services_config
from data_platform.services.instance import instance_home
from data_platform_tests.landed_records import contract_event, contract_payment

T = TypeVar("T")


def environ_without_settings(**env: str) -> dict[str, str]:
    """This process's environment without the platform's and Dagster's settings (every
    DATA_PLATFORM_* and DAGSTER_* variable: the shell running the tests may hold some, e.g.
    `make -s services-env`'s), plus `env`."""
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATA_PLATFORM_", "DAGSTER_"))
    }
    return {**inherited, **env}


def run_services(
    env: dict[str, str], action: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m data_platform.services ACTION` (what make services-* runs) in `env`."""
    return subprocess.run(
        [sys.executable, "-m", "data_platform.services", action],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def next_version_of_the_code(root: Path, environ: dict[str, str]) -> dict[str, str]:
    """`environ` with PYTHONPATH first at a copy of the platform's package under `root`, one
    comment apart from the repository's (the same dbt project, dagster.yaml and workspace.yaml,
    which `materialize` reads its run's origin from): a process in it runs another code version
    (code_version.py), as after a deploy."""
    repo = Path(__file__).resolve().parents[1]
    package = root / "data_platform"
    shutil.copytree(repo / "data_platform", package, ignore=shutil.ignore_patterns("__pycache__"))
    for shared in ("dbt", "dagster.yaml", "workspace.yaml"):
        (root / shared).symlink_to(repo / shared)
    with (package / "assets" / "raw.py").open("a") as module:
        module.write("# the next version\n")
    path = os.pathsep.join(filter(None, [str(root), environ.get("PYTHONPATH")]))
    return {**environ, "PYTHONPATH": path}


def free_port() -> int:
    """A free TCP port on 127.0.0.1, for a server a test or benchmark starts."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dagster_postgres_url(url: str) -> str:
    """`url` with psycopg2 as its driver, as the services' generated dagster.yaml names it:
    dagster-postgres is not tested on psycopg 3 (its NOTIFY fails there), which SQLAlchemy 2.1
    picks for a bare postgresql:// URL."""
    return make_url(url).set(drivername="postgresql+psycopg2").render_as_string(False)


def write_postgres_instance(dagster_home: Path, url: str) -> None:
    """A dagster.yaml in `dagster_home` that puts the whole instance in the database `url`."""
    (dagster_home / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: '{dagster_postgres_url(url)}'\n"
    )


def stop_process_group(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM the process group a test started (start_new_session=True); SIGKILL after timeout."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def put_lines(landing: LandingZone, key: str, lines: list[str], tmp_path: Path) -> None:
    """Write lines (each ending in a newline) to the landing zone, gzipped for `.gz` keys."""
    data = "".join(f"{line}\n" for line in lines).encode()
    if key.endswith(".gz"):
        data = gzip.compress(data)
    local = tmp_path / f"upload-{abs(hash(key))}"
    local.write_bytes(data)
    landing.upload_file(local, key)


# What makes a line blank by the contract: ASCII white space only (a no-break space does not).
BLANK = " \t\n\v\f\r"


def count_records(path: Path, header_lines: int = 0) -> int:
    """Non-blank lines but the first `header_lines` of them (the header, after any blank
    lines): what the contract calls records."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
        lines = f.read().split("\n")
    return len([line for line in lines if line.strip(BLANK)][header_lines:])


def is_contract_event(line: str) -> bool:
    """An independent reading of the contract's required rules for one event line (stated in
    data_platform/ingestion/record_rules.py)."""
    return contract_event(line) is not None


def query(warehouse_path: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(warehouse_path), read_only=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        return conn.execute(sql, params or []).fetchall()


def materialize_days(
    assets: list, resources: dict, days: list[date], **kwargs
) -> dg.ExecuteInProcessResult:
    """One run over a range of days, as a single-run backfill does it."""
    tags = dict(zip(RANGE_TAGS, (days[0].isoformat(), days[-1].isoformat()), strict=True))
    return dg.materialize(assets, resources=resources, tags=tags, **kwargs)


def is_contract_payment(row: dict[str, str] | None, extra: list[str] | None) -> bool:
    """An independent reading of the payments contract for one csv.DictReader row."""
    if row is None or extra or any(v is None for v in row.values()):
        return False  # a row with more or fewer fields than the header
    return contract_payment(row) is not None


def classify_landing_file(path: Path, key: str) -> dict[tuple[str, int], bool]:
    """(key, line number) -> does the record meet the contract, for every record of one file."""
    import csv

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.removesuffix("\r") for line in lines]
    if key.startswith("events/"):
        return {
            (key, n): is_contract_event(line)
            for n, line in enumerate(lines, start=1)
            if line.strip()
        }
    header = next(csv.reader([lines[0]]))
    verdicts = {}
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        values = next(csv.reader([line]))
        row = dict(zip(header, values, strict=False)) if len(values) <= len(header) else None
        if row is not None and len(values) < len(header):
            row = None
        verdicts[(key, n)] = is_contract_payment(row, None)
    return verdicts


def distributed_home(home: Path, database: str) -> dict[str, str]:
    """The variables of a home whose instance is on PostgreSQL, as `make -s services-env`
    prints them: DAGSTER_HOME is the generated instance folder, DAGSTER_PG_* the database."""
    url = make_url(database)
    return {
        "DATA_PLATFORM_HOME": str(home),
        "DAGSTER_HOME": str(instance_home(load_services_config({"DATA_PLATFORM_HOME": str(home)}))),
        "DAGSTER_PG_HOST": url.host,
        "DAGSTER_PG_PORT": str(url.port),
        "DAGSTER_PG_USER": url.username,
        "DAGSTER_PG_PASSWORD": url.password,
        "DAGSTER_PG_DB": url.database,
    }


def while_frozen(pid: int, action: Callable[[], T], within: float) -> T:
    """What `action` returns while the server process `pid` is stopped (SIGSTOP), as a hung disk
    or a frozen machine leaves it: the kernel still takes its TCP connections, nothing answers.
    Run in a thread, since a client without a timeout waits for ever: `queue.Empty` when it has
    not returned (or raised) within `within` seconds. The server is resumed after."""
    outcome: queue.Queue = queue.Queue()

    def act() -> None:
        try:
            outcome.put((True, action()))
        except Exception as error:
            outcome.put((False, error))

    os.kill(pid, signal.SIGSTOP)
    try:
        threading.Thread(target=act, daemon=True).start()
        returned, value = outcome.get(timeout=within)
    finally:
        os.kill(pid, signal.SIGCONT)
    if not returned:
        raise value
    return value
