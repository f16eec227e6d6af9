"""`data-platform sql` as scripts run it: a subprocess on a warehouse of known values."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import signal
import subprocess
import sys
import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from data_platform_tests.helpers import environ_without_settings

CLI = str(Path(sys.executable).with_name("data-platform"))
ROWS = [
    (1, 'Zoë, "the" first', Decimal("19.99"), datetime(2026, 1, 2, 3, 4, 5), date(2026, 1, 2), {"tier": "gold"}),
    (2, "plain", Decimal("0.05"), datetime(2026, 1, 3, 23, 59, 59, 250000), date(2026, 1, 3), None),
    (3, None, Decimal("-1234567.80"), datetime(2026, 2, 1), date(2026, 2, 1), {"n": [1, 2]}),
]  # fmt: skip
COLUMNS = ["id", "name", "price", "seen_at", "day", "extra"]
QUERY = "SELECT * FROM marts.sample ORDER BY id"
# Holds the warehouse's write lock until stdin closes, then commits one more row.
WRITER = """
import sys, duckdb
conn = duckdb.connect(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()
conn.execute("INSERT INTO marts.sample (id, name) VALUES (4, 'written while you waited')")
conn.close()
"""


@pytest.fixture
def home(tmp_path) -> Path:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as conn:
        conn.execute("CREATE SCHEMA marts")
        conn.execute(
            "CREATE TABLE marts.sample (id INTEGER, name VARCHAR, price DECIMAL(10,2), "
            "seen_at TIMESTAMP, day DATE, extra JSON)"
        )
        conn.executemany(
            "INSERT INTO marts.sample VALUES (?, ?, ?, ?, ?, ?)",
            [(*row[:5], None if row[5] is None else json.dumps(row[5])) for row in ROWS],
        )
    return tmp_path


def sql(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, "sql", *args], env=environment(home), capture_output=True, text=True, timeout=120
    )


def environment(home: Path) -> dict[str, str]:
    return environ_without_settings(DATA_PLATFORM_HOME=str(home))


def test_csv_has_a_header_and_every_value(home):
    result = sql(home, QUERY, "--format", "csv")
    assert result.returncode == 0, result.stderr
    records = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(records[0]) == COLUMNS
    assert [
        (
            int(r["id"]),
            r["name"] or None,
            Decimal(r["price"]),
            datetime.fromisoformat(r["seen_at"]),
            date.fromisoformat(r["day"]),
            json.loads(r["extra"]) if r["extra"] else None,
        )
        for r in records
    ] == ROWS


def test_json_is_one_array_of_objects_with_exact_decimals(home):
    result = sql(home, QUERY, "--format", "json")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout, parse_float=Decimal)
    assert [
        (
            r["id"],
            r["name"],
            r["price"],
            datetime.fromisoformat(r["seen_at"]),
            date.fromisoformat(r["day"]),
            r["extra"],
        )
        for r in records
    ] == ROWS
    assert json.loads(sql(home, "SELECT 1 WHERE false", "--format", "json").stdout) == []


def test_table_is_aligned_text_with_a_row_count(home):
    result = sql(home, QUERY)  # the default format
    assert result.returncode == 0, result.stderr
    header, rule, *lines, count = result.stdout.splitlines()
    assert count == "(3 rows)"
    # The rule's runs of dashes mark the columns; every line is cut at the same places.
    spans, start = [], 0
    for run in rule.split("  "):
        spans.append((start, start + len(run)))
        start += len(run) + 2
    cells = [[line[a:b].strip() for a, b in spans] for line in lines]
    assert [header[a:b].strip() for a, b in spans] == COLUMNS
    assert [
        (
            int(c[0]),
            None if c[1] == "NULL" else c[1],
            Decimal(c[2]),
            datetime.fromisoformat(c[3]),
            date.fromisoformat(c[4]),
            None if c[5] == "NULL" else json.loads(c[5]),
        )
        for c in cells
    ] == ROWS
    assert lines[0][spans[2][0] : spans[2][1]].startswith(" ")  # numbers to the right


def test_a_write_is_refused_with_one_line(home):
    for statement in ("DELETE FROM marts.sample", f"COPY marts.sample TO '{home / 'out.csv'}'"):
        result = sql(home, statement)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1
        assert result.stderr.startswith("data-platform sql: ")
        assert "only reads the warehouse" in result.stderr
    assert not (home / "out.csv").exists()
    # Two statements ran both and showed the last's rows; Spark's parser refuses the second.
    two = sql(home, "SELECT 1 AS a; SELECT 2 AS b", "--format", "csv")
    assert two.returncode == 1 and two.stdout == "" and two.stderr.count("\n") == 1
    assert "the query holds 2 statements: pass one" in two.stderr
    assert sql(home, "SELECT 1 AS a;", "--format", "csv").stdout == "a\n1\n"
    assert sql(home, "SELECT count(*) AS n FROM marts.sample", "--format", "csv").stdout == "n\n3\n"


def test_an_empty_query_a_closed_pipe_and_a_nan_timeout_are_no_tracebacks(home):
    """A comment-only query was an AttributeError, `| head` a BrokenPipeError, and
    `--timeout nan` a wait that never ended (nan compares false with every deadline)."""
    empty = sql(home, "-- nothing to run")
    assert empty.returncode == 1 and empty.stderr.count("\n") == 1
    assert "the query is empty" in empty.stderr
    reader = subprocess.Popen(
        [CLI, "sql", "SELECT * FROM range(500000)", "--format", "csv"],
        env=environment(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout.readline() == b"range\n"
    reader.stdout.close()  # what `| head -1` does
    assert reader.wait(timeout=60) == 0
    assert reader.stderr.read() == b""
    nan = sql(home, QUERY, "--timeout", "nan")
    assert nan.returncode == 2 and "'nan' is not a number of seconds >= 0" in nan.stderr


def start_writer(home: Path) -> subprocess.Popen:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(home / "warehouse.duckdb")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline().strip() == "locked"
    return writer


# `data-platform` itself, saying "blocked" on stderr once its open of the warehouse has met the
# writer's lock: a probe on the lock test, which changes nothing of what the command does.
WAITING_CLI = """
import sys
from data_platform.cli import main
from data_platform.resources import duckdb_lock

conflict = duckdb_lock.is_lock_conflict

def told(error):
    if conflict(error):
        print("blocked", file=sys.stderr, flush=True)
        duckdb_lock.is_lock_conflict = conflict
        return True
    return False

duckdb_lock.is_lock_conflict = told
sys.argv[0] = "data-platform"
sys.exit(main())
"""


def test_a_query_waits_for_the_writer_then_sees_its_commit(home):
    """Started while the writer holds the warehouse, the query meets its lock, waits (no error)
    and, once the writer commits, answers with the committed row: it waited, however long the
    command took to start."""
    writer = start_writer(home)
    count = "SELECT count(*) AS n FROM marts.sample"
    try:
        query = subprocess.Popen(
            [sys.executable, "-c", WAITING_CLI, "sql", count, "--format", "csv"],
            env=environment(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert query.stderr.readline() == "blocked\n", query.communicate()
        assert query.poll() is None, query.communicate()  # met the lock and still waiting
    finally:
        writer.communicate("", timeout=30)
    out, err = query.communicate(timeout=120)
    assert query.returncode == 0, err
    assert out == "n\n4\n"  # the writer's row, committed after the query met the lock
    assert err == ""


def test_a_short_timeout_fails_with_one_line_naming_the_writer(home):
    writer = start_writer(home)
    try:
        started = time.monotonic()
        result = sql(home, "SELECT 1", "--timeout", "1")
        waited = time.monotonic() - started
    finally:
        writer.communicate("", timeout=30)
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(
        f"data-platform sql: the warehouse {home / 'warehouse.duckdb'} is still locked by "
    )
    assert f"(PID {writer.pid})" in line and "after 1 s" in line and "--timeout" in line
    assert waited >= 1


# Reads the first line, says so, then reads nothing more until the file argv[1] exists: a pager
# whose user has not scrolled yet. Then counts the lines.
SLOW_READER = """
import pathlib, sys, time
first = sys.stdin.buffer.readline()
print("first line read", flush=True)
go = pathlib.Path(sys.argv[1])
while not go.exists():
    time.sleep(0.05)
print(1 + len(sys.stdin.buffer.read().splitlines()), flush=True)
"""
# Takes the write lock as a run's step does (the platform's helper, a short wait), writes a row.
LOCK_TAKER = """
import sys, duckdb
from data_platform.resources.duckdb_lock import connect_with_lock_wait
try:
    conn = connect_with_lock_wait(sys.argv[1], timeout=float(sys.argv[2]))
except duckdb.IOException as error:
    sys.exit(f"no lock: {error}")
conn.execute("INSERT INTO marts.sample (id, name) VALUES (5, 'written while a pager read')")
conn.close()
"""


def test_a_slow_reader_leaves_the_warehouse_to_writers(home, tmp_path):
    """The file stayed locked while the output drained: behind a paused pager, a run's step
    waiting for the lock failed after its wait. Now the rows are spooled and the file released
    at once; the reader still gets every row."""
    rows = 300_000  # ~2 MB of csv: far more than a pipe holds
    query = subprocess.Popen(
        [CLI, "sql", f"SELECT range AS n, 'x' AS pad FROM range({rows})", "--format", "csv"],
        env=environment(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    go = tmp_path / "go"
    reader = subprocess.Popen(
        [sys.executable, "-c", SLOW_READER, str(go)],
        stdin=query.stdout,
        stdout=subprocess.PIPE,
        text=True,
    )
    query.stdout.close()  # the reader's now
    try:
        assert reader.stdout.readline() == "first line read\n"  # the query has run
        time.sleep(1)
        assert query.poll() is None  # blocked on the full pipe
        writer = subprocess.run(
            [sys.executable, "-c", LOCK_TAKER, str(home / "warehouse.duckdb"), "10"],
            env=environment(home),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert writer.returncode == 0, writer.stderr
    finally:
        go.touch()
    assert reader.stdout.readline() == f"{rows + 1}\n"  # the header and every row
    assert reader.wait(timeout=60) == 0
    assert query.wait(timeout=60) == 0, query.stderr.read()
    counted = sql(home, "SELECT count(*) AS n FROM marts.sample", "--format", "csv")
    assert counted.stdout == "n\n4\n"


def test_the_spool_moves_to_a_temporary_file_past_its_memory_bound():
    """Past the bound the rows go to disk, and come back exact and in order."""
    from data_platform.sql_engines.spool import RowSpool  # here: the module is new

    rows = [
        (i, f"name {i}", Decimal(i) / 100, datetime(2026, 1, 1, i % 24), None, {"k": [i]})
        for i in range(25_000)
    ]
    with RowSpool(memory_bytes=50_000) as spool:
        spool.extend(iter(rows))
        assert spool.spilled
        assert list(spool.rows()) == rows
    with RowSpool() as small:
        small.extend(rows[:10])
        assert not small.spilled and list(small.rows()) == rows[:10]


def test_only_a_lock_conflict_is_waited_for():
    """A corrupt file's message holds "lock" too ("... in block ..."): it was waited on for the
    whole lock timeout, then reported as locked by a writer."""
    from data_platform.resources.duckdb_lock import is_lock_conflict

    held = 'IO Error: Could not set lock on file "/w.duckdb": Conflicting lock is held in x (PID 7)'
    corrupt = "IO Error: Corrupt database file: computed checksum 1 does not match 2 in block 3"
    assert is_lock_conflict(duckdb.IOException(held))
    assert not is_lock_conflict(duckdb.IOException(corrupt))


# A query DuckDB takes minutes over: a cross join of two million-row ranges.
LONG_QUERY = "SELECT sum(hash(a.range, b.range) % 7) FROM range(1000000) a, range(1000000) b"


def holds_the_warehouse(process: subprocess.Popen, home: Path) -> bool:
    """Whether `process` has the warehouse file open (its query is running)."""
    fds = Path(f"/proc/{process.pid}/fd")
    with contextlib.suppress(OSError):
        return any(
            fd.resolve() == home / "warehouse.duckdb" for fd in fds.iterdir() if fd.is_symlink()
        )
    return False


def interrupted(process: subprocess.Popen) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `process` after a Ctrl-C; killed if it ran on (the
    query would have held a core for hours after the test failed)."""
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, out, err


def test_ctrl_c_during_a_query_or_the_wait_is_one_line_and_exit_130(home):
    """Ctrl-C while DuckDB ran the query was a traceback ending in DuckDB's `RuntimeError:
    Query interrupted`, exit 1, as if the query had failed, or, once DuckDB's main thread
    waited on its workers (under load, every time), nothing at all until the query ended;
    during the wait for a writer, a KeyboardInterrupt's traceback. Both are one line and 130,
    as `materialize` answers it."""

    # A shell running scripts in the background starts them with SIGINT ignored: as typed.
    def as_typed() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    query = subprocess.Popen(
        [CLI, "sql", LONG_QUERY],
        env=environment(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_typed,
    )
    deadline = time.monotonic() + 60
    while not holds_the_warehouse(query, home) and time.monotonic() < deadline:
        assert query.poll() is None, query.communicate()
        time.sleep(0.05)
    time.sleep(3)  # the query under way: DuckDB's main thread waits on its workers
    assert interrupted(query) == (130, "", "data-platform sql: interrupted\n")

    writer = start_writer(home)
    try:
        waiting = subprocess.Popen(
            [sys.executable, "-c", WAITING_CLI, "sql", QUERY],
            env=environment(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=as_typed,
        )
        assert waiting.stderr.readline() == "blocked\n", waiting.communicate()
        assert interrupted(waiting) == (130, "", "data-platform sql: interrupted\n")
    finally:
        writer.communicate("", timeout=30)


def test_a_query_holding_the_warehouse_too_long_is_stopped_before_runs_fail(home):
    """A read holds the file, and DuckDB lets no writer open it meanwhile: an analysis of a
    few minutes failed the run then writing the warehouse (its dbt step out of connect
    attempts after ~1 min). A query is stopped past its hold (--hold-at-most, 45 s by default),
    in one line, the file released."""
    from types import SimpleNamespace

    from data_platform.sql_engines import QueryError, duckdb_engine

    settings = SimpleNamespace(warehouse=home / "warehouse.duckdb")
    slow = "SELECT sum(hash(a.range + b.range)) FROM range(60000) a, range(40000) b"
    started = time.monotonic()
    with (
        pytest.raises(QueryError, match="held the warehouse for 1 s"),
        duckdb_engine.read_only_query(settings, slow, timeout=5, hold=1.0),
    ):
        pass
    assert time.monotonic() - started < 6
    duckdb.connect(str(home / "warehouse.duckdb")).close()  # a writer gets it at once
