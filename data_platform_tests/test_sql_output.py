"""`data-platform sql` output on values that broke it: producers' control characters in a
table, NaN nested in JSON, MAP keys that are not strings, duplicate column names, a corrupt
warehouse file, and a table too large to hold in memory."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import duckdb
import pytest

from data_platform.sql_engines import QueryError
from data_platform.sql_output import write_csv, write_json, write_table
from data_platform_tests.helpers import environ_without_settings

CLI = str(Path(sys.executable).with_name("data-platform"))
# What a producer may put in a record that ends in raw.dead_letter.raw_record: a terminal
# title change, a screen clear, a carriage return that overprints the line.
HOSTILE = "ok\x1b]0;pwned\x07\x1b[2J\rfake\tcell\nline\x7f\x9b\u202e"


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as every other JSON parser does."""

    def refuse(name: str):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def sql(home: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [CLI, "sql", *args],
        env=environ_without_settings(DATA_PLATFORM_HOME=str(home)),
        capture_output=True,
        timeout=120,
    )
    # Decoded by hand: text mode would turn a bare CR into a newline.
    result.stdout, result.stderr = result.stdout.decode(), result.stderr.decode()
    return result


@pytest.fixture
def home(tmp_path) -> Path:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as conn:
        conn.execute("CREATE SCHEMA raw")
        conn.execute("CREATE TABLE raw.dead_letter (dt DATE, raw_record VARCHAR)")
        conn.execute("INSERT INTO raw.dead_letter VALUES (DATE '2026-01-05', ?)", [HOSTILE])
    return tmp_path


def test_a_table_shows_control_characters_escaped_and_csv_json_keep_them_exact(home):
    query = "SELECT raw_record FROM raw.dead_letter"
    table = sql(home, query)
    assert table.returncode == 0, table.stderr
    assert not any(c in table.stdout for c in "\x1b\x07\r\t\x7f\x9b\u202e")
    assert table.stdout.count("\n") == 4  # header, rule, the row, the count
    shown = table.stdout.splitlines()[2].strip()
    assert shown == r"ok\x1b]0;pwned\x07\x1b[2J\rfake\tcell\nline\x7f\x9b\u202e"

    assert strict_json(sql(home, query, "--format", "json").stdout) == [{"raw_record": HOSTILE}]
    csv_out = sql(home, query, "--format", "csv").stdout
    assert HOSTILE in csv_out


NESTED = (
    "SELECT [1.5, 'nan'::DOUBLE, '-inf'::DOUBLE] AS l, {'a': 'inf'::DOUBLE} AS s, "
    "map([DATE '2026-01-05'], [1.50::DECIMAL(5,2)]) AS m, 'nan'::DOUBLE AS top"
)


def test_nested_non_finite_floats_are_null_and_map_keys_text_in_every_format(home):
    result = sql(home, NESTED, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert strict_json(result.stdout) == [
        {"l": [1.5, None, None], "s": {"a": None}, "m": {"2026-01-05": "1.50"}, "top": None}
    ]
    csv_result = sql(home, NESTED, "--format", "csv")
    assert csv_result.returncode == 0, csv_result.stderr
    _, row = csv_result.stdout.splitlines()
    assert row == '"[1.5, null, null]","{""a"": null}","{""2026-01-05"": ""1.50""}",nan'
    table = sql(home, NESTED)
    assert table.returncode == 0, table.stderr
    assert '{"2026-01-05": "1.50"}' in table.stdout


def test_duplicate_column_names_are_refused_in_json_with_one_line(home):
    query = "SELECT d.dt, e.dt FROM raw.dead_letter d, raw.dead_letter e"
    result = sql(home, query, "--format", "json")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "two columns named 'dt'" in result.stderr
    # csv and the table label columns by position: they keep both.
    assert sql(home, query, "--format", "csv").stdout.splitlines()[0] == "dt,dt"


def test_a_value_that_cannot_be_written_is_one_line_not_a_traceback():
    class Odd:
        def __str__(self) -> str:
            raise RuntimeError("no text for this value\nsecond line")

    for write in (
        lambda out: write_csv(["x"], [(Odd(),)], out),
        lambda out: write_json(["x"], ["VARCHAR"], [(Odd(),)], out),
        lambda out: write_table(["x"], [(Odd(),)], out),
    ):
        with pytest.raises(QueryError, match=r"^cannot write the result.*no text for this value$"):
            write(io.StringIO())


def test_a_corrupt_warehouse_is_one_line(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE t AS SELECT range AS x FROM range(100000)")
    with path.open("r+b") as file:  # the block after the headers: checksums no longer match
        file.seek(3 * 4096)
        file.write(b"\xff" * 64)
    result = sql(tmp_path, "SELECT count(*) FROM t")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert "Corrupt database file" in result.stderr and str(path) in result.stderr


def test_a_large_table_is_not_held_in_memory_and_a_small_one_reads_as_before():
    small = io.StringIO()
    write_table(["id", "name"], [(1, "a"), (22, None), (3, "ccc")], small)
    assert small.getvalue() == ("id  name\n--  ----\n 1  a\n22  NULL\n 3  ccc\n(3 rows)\n")

    rows = 200_000
    tracemalloc.start()
    try:
        write_table(["n", "label"], ((i, f"row {i}") for i in range(rows)), _Discard())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Every row's cells held at once took ~40 MB here; a batch of them is a few MB.
    assert peak < 12_000_000, peak


class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


def test_small_decimals_and_fixed_size_arrays_read_as_written_in_every_format(home):
    """A DECIMAL with more than six places (a rate, a unit price per gram) came out of str()
    in scientific notation, 1.000E-7 and 0E-10, in csv, json and the table alike; a fixed-size
    ARRAY, which DuckDB hands over as a tuple, was Python's "(1, 2)", not JSON."""
    query = (
        "SELECT 0.0000001::DECIMAL(18,10) AS rate, 0::DECIMAL(18,10) AS zero, "
        "[1, 2]::INTEGER[2] AS pair"
    )
    csv_out = sql(home, query, "--format", "csv")
    assert csv_out.returncode == 0, csv_out.stderr
    assert csv_out.stdout == 'rate,zero,pair\n0.0000001000,0.0000000000,"[1, 2]"\n'
    as_json = sql(home, query, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert as_json.stdout == '[\n{"rate": 0.0000001000, "zero": 0.0000000000, "pair": [1, 2]}\n]\n'
    assert strict_json(as_json.stdout) == [{"rate": 1e-7, "zero": 0, "pair": [1, 2]}]
    table = sql(home, query)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[2].split() == ["0.0000001000", "0.0000000000", "[1,", "2]"]
