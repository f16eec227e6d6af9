"""What DuckDB's lenient JSON reader takes and JSON does not (NaN, Infinity, trailing commas):
one rule (`record_rules.lenient_json`) that refuses such a line on DuckDB and names the reason
of a refused line on both engines. Spark's side of the corpus is in test_dbt_spark."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from data_platform.ingestion import record_rules as rules
from data_platform.ingestion.file_formats import DUCKDB, EVENT_FILES
from data_platform.ingestion.files import ingest_file_partitions
from data_platform.ingestion.record_rules import (
    INVALID_JSON,
    NON_NUMERIC_LINE,
    TRAILING_COMMA_LINE,
    TRAILING_TEXT_LINE,
)
from data_platform.resources.landing import LandingZone

DAY = date(2025, 6, 1)
LOADED_AT = datetime(2025, 6, 2)
# The screen DuckDB's diagnosis used before the rule was written once: strings blanked by a
# regexp that reads their escapes, then RE2's \s ([\t\n\f\r ]) before the bracket. What the
# rule must agree with on every line DuckDB's reader takes.
FORMER_SCREEN = (
    r"""regexp_matches(regexp_replace(line, '"(?:[^"\\]|\\.)*"', '""', 'g'), """
    r"""'(?i)nan|inf|,\s*[}\]]')"""
)


def event(event_id: str, compact: bool = False, **fields: object) -> str:
    """An event line of the contract, `fields` added or replaced; minified when `compact`
    (as the fast paths spell lines), else spaced as json.dumps spaces them."""
    record: dict[str, object] = {
        "event_id": event_id,
        "user_id": 7,
        "event_type": "page_view",
        "occurred_at": "2025-06-01T10:00:00Z",
    }
    record.update(fields)
    return json.dumps(record, separators=(",", ":") if compact else None)


def props(event_id: str, text: str) -> str:
    """An event whose `properties` is the JSON text `text`, as written (lenient or not)."""
    return event(event_id)[:-1] + f', "properties": {text}}}'


# (line, its dead letter's reason, None when the line loads): the same on both engines.
CORPUS = [
    # Strings hold what the rule looks for outside them: text, never a reason.
    (event("s1", properties={"note": "NaN"}), None),
    (event("s2", properties={"note": "-Infinity, ]"}), None),
    (event("s3", compact=True, properties={"note": ",}"}), None),
    (event("s4", properties={"nan": 1, "inf": 2, "Infinity": 3}), None),  # keys
    (event("s5", event_type="nan"), None),
    (event("s6", properties={"note": 'say "nan", }'}), None),  # escaped quotes around it
    (event("s7", properties={"note": "x\\"}), None),  # a string ending in a backslash: "x\\"
    (event("s8", properties={"note": 'x\\"nan'}), None),  # "x\\\"nan": \\ then \"
    (props("s9", '{"q": "\\u0022,]", "r": "\\u006eaN"}'), None),  # unicode escapes
    (event("s10", properties={"note": "café ∞"}), None),  # \u escapes from ensure_ascii
    (event("s11", properties={"note": "café ∞"}, compact=True).replace("\\u00e9", "é"), None),
    # Strings side by side in a list: deleted instead of blanked, `["a", "b"]` read `[, ]`.
    (event("l1", properties={"tags": ["a", "b"]}), None),
    (event("l2", compact=True, properties={"tags": ["a", "b", "c"]}), None),
    (props("l3", '{"tags": ["a" , "b"\t]}'), None),
    (props("l4", '{"x": [1, 2 ], "y": {"z": "w" }}'), None),
    (event("l5", properties={"tags": ['a"', "b"]}), None),  # an escape: strings blanked
    (event("n1", properties={"x": 1e5, "y": -0.5e-3, "z": True, "w": None}), None),
    # NaN and Infinity outside a string, in any case (DuckDB's reader takes every spelling).
    (event("f1", properties={"x": float("nan")}), NON_NUMERIC_LINE),
    (event("f2", properties={"x": float("-inf")}), NON_NUMERIC_LINE),
    (props("f3", '{"x": nan}'), NON_NUMERIC_LINE),
    (props("f4", '{"x": iNf}'), NON_NUMERIC_LINE),
    (props("f5", '{"note": "a\\"", "x": NaN}'), NON_NUMERIC_LINE),  # after an escaped quote
    (props("f6", '{"note": "x\\\\", "x": Infinity}'), NON_NUMERIC_LINE),  # after "x\\"
    (props("f7", '{"x": [NaN, "NaN"]}'), NON_NUMERIC_LINE),
    # A comma, JSON's whitespace (space, tab, CR), then a closing bracket.
    (props("c1", '{"ids": [1,\t]}'), TRAILING_COMMA_LINE),
    (props("c2", '{"ids": [1,\r]}'), TRAILING_COMMA_LINE),
    (props("c3", '{"tags": ["a", "b",]}'), TRAILING_COMMA_LINE),
    (props("c4", '{"note": "x\\\\",}'), TRAILING_COMMA_LINE),  # after "x\\"
    (props("c5", '{"note": "\\u0022",  }'), TRAILING_COMMA_LINE),
    (event("c6")[:-1] + ", }", TRAILING_COMMA_LINE),
    (props("c7", '{"x": NaN,}'), NON_NUMERIC_LINE),  # both: named for its NaN
    # \f and \v are not JSON's whitespace: no reader takes them, no trailing comma is named.
    (props("w1", '{"ids": [1,\f]}'), INVALID_JSON),
    (props("w2", '{"ids": [1,\v]}'), INVALID_JSON),
    (props("w3", '{"ids": [1,\u00a0]}'), INVALID_JSON),
    (props("w4", '{"ids": [1\f]}'), INVALID_JSON),
    (props("w5", '{"a": 1,\f}'), INVALID_JSON),
    # Cut short: in a string or after it, with what the rule looks for in it.
    (props("u1", '{"note": "a, }"'), INVALID_JSON),
    (props("u2", '{"tags": ["a", "b"]'), INVALID_JSON),  # was named a trailing comma
    (props("u3", '{"tags": ["a", "b"], "x": 1'), INVALID_JSON),  # was too
    (props("u6", '{"tags": ["a\\"", "b"]'), INVALID_JSON),  # was too
    (props("u4", '{"x": NaN, "note": "a'), NON_NUMERIC_LINE),
    # A word in a string the line ends inside is text too (it was named NaN or Infinity).
    (props("u5", '{"note": "banana'), INVALID_JSON),
    (props("u7", '{"note": "more info, ]'), INVALID_JSON),
    (props("u8", '{"note": "a\\"nan", "x": 1.5, "y": "cut inf'), INVALID_JSON),
    (event("t1") + ' ["a", "b"]', TRAILING_TEXT_LINE),  # was named a trailing comma
]


def corpus_landing(tmp_path: Path) -> LandingZone:
    """The corpus as one day's events file, line i the corpus' i-th."""
    folder = tmp_path / "landing" / "events" / f"dt={DAY}"
    folder.mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(f"{line}\n" for line, _ in CORPUS))
    return LandingZone(url=str(tmp_path / "landing"))


def expected_dead_letters() -> dict[int, str]:
    return {n: reason for n, (_, reason) in enumerate(CORPUS, start=1) if reason}


def ingested(warehouse: Path, landing: LandingZone, fmt=EVENT_FILES) -> dict[str, list]:
    """The corpus' day ingested on DuckDB: its dead letters and rows, sorted."""
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        ingest_file_partitions(conn, landing, fmt, [DAY], LOADED_AT)
        return {
            "dead_letter": conn.execute(
                "SELECT line_number, error FROM raw.dead_letter ORDER BY ALL"
            ).fetchall(),
            "events": conn.execute(
                "SELECT _line_number, event_id, properties::VARCHAR, _rescued::VARCHAR "
                "FROM raw.events ORDER BY ALL"
            ).fetchall(),
        }


def test_the_corpus_lands_as_stated_on_duckdb(tmp_path):
    """Each corpus line's dead letter and reason, or its row, on DuckDB; the same when every
    line goes through the diagnosis (the fast paths off), where the rule refuses lines."""
    landing = corpus_landing(tmp_path)
    fast = ingested(tmp_path / "fast.duckdb", landing)
    assert dict(fast["dead_letter"]) == expected_dead_letters()
    loads = {n for n, (_, reason) in enumerate(CORPUS, start=1) if reason is None}
    assert [row[0] for row in fast["events"]] == sorted(loads)
    diagnosis_only = dataclasses.replace(EVENT_FILES, fast_sql=None, trusting_fast_sql=None)
    assert ingested(tmp_path / "diagnosed.duckdb", landing, diagnosis_only) == fast


def random_line(rng: random.Random) -> str:
    """A short line of JSON's tokens, the lenient ones, escapes and odd whitespace, mostly
    taken by DuckDB's reader: what the rule and the former screen must tell alike."""
    spaces = [" ", "\t", "\r", "", "", "", "\f", "\v"]
    strings = ['"a"', '"nan"', '"\\""', '"\\\\"', '"x\\\\"', '"\\u0022"', '",]"', '"\\\\\\""', '""']
    words = ["1", "-0.5e3", "true", "null", "NaN", "-inf", "Infinity", "nAn"]

    def space() -> str:
        return rng.choice(spaces) if rng.random() < 0.3 else ""

    def value(depth: int) -> str:
        kind = rng.randrange(6 if depth < 3 else 2)
        if kind == 0:
            return rng.choice(words)
        if kind == 1:
            return rng.choice(strings)
        items = [value(depth + 1) for _ in range(rng.randrange(4))]
        if kind < 4:
            items = [f"{rng.choice(strings)}{space()}:{space()}{item}" for item in items]
        body = f"{space()},{space()}".join(items)
        if rng.random() < 0.2:
            body += f",{space()}"  # a trailing comma
        opened, closed = ("{", "}") if kind < 4 else ("[", "]")
        return f"{opened}{space()}{body}{space()}{closed}"

    return value(2) if rng.random() < 0.1 else value(0)


def test_the_rule_refuses_exactly_the_lines_the_former_screen_did():
    """On every line DuckDB's reader takes, `lenient_json` and the former screen agree: both
    blank strings alike (escapes read), and past a comma the former's \\s also takes \\f,
    which no line the reader takes has outside its strings (nor a line break: lines are split
    at them). Where the reader refuses, the screen is never asked. The corpus, then 20,000
    random lines of tricky tokens (seeded), about half of them taken by the reader."""
    rng = random.Random(20250601)
    lines = [line for line, _ in CORPUS] + [random_line(rng) for _ in range(20_000)]
    lines += ['{"a":1,\f}', '{"a":[1,\n]}', '{"a":"x\\\\"}', '{"a":"\\\\\\"",}']
    rule = rules.lenient_json(DUCKDB, "line")
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE lines AS SELECT unnest(?) AS line", [lines])
        taken, lenient, differing = conn.execute(
            f"SELECT count(*), count(*) FILTER ({FORMER_SCREEN}), "
            f"list(line) FILTER (({FORMER_SCREEN}) <> ({rule})) "
            "FROM lines WHERE json_valid(line)"
        ).fetchone()
    assert differing is None, differing[:5]
    # The corpus exercised both sides: many lines taken, lenient and strict among them.
    assert taken > 5_000 and 1_000 < lenient < taken - 1_000


def test_the_rule_answers_as_its_ungated_test_on_every_line():
    """The rule blanks strings only for a line with an escape or that holds the pattern
    somewhere (a cheap test first): over any text, refused or not, the answer is the blanked
    line's. 20,000 lines of the corpus' characters, an escape dropped outside a string
    joining `na\\xn` or `,\\ ]` among them, and the random lines above."""
    rng = random.Random(8259)
    soup = 'naNiINf,]} \t\r\\"{[:x1'
    lines = ["".join(rng.choices(soup, k=rng.randrange(1, 16))) for _ in range(20_000)]
    lines += [random_line(rng) for _ in range(5_000)] + ["na\\xn", "[1,\\ ]", '"a"nan']
    blanked = rules.outside_strings(DUCKDB, "line", rules.STRING_EVEN_CUT, blank=rules.BLANK_STRING)
    ungated = {
        "lenient_json": f"{rules.NON_NUMERIC}|{rules.TRAILING_COMMA}",
        "_non_numeric": rules.NON_NUMERIC,
        "_trailing_comma": rules.TRAILING_COMMA,
    }
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE lines AS SELECT unnest(?) AS line", [lines])
        for name, pattern in ungated.items():
            rule = getattr(rules, name)(DUCKDB, "line")
            plain = DUCKDB.matches(blanked, pattern)
            holding, differing = conn.execute(
                f"SELECT count(*) FILTER ({plain}), list(line) FILTER (({rule}) <> ({plain})) "
                "FROM lines"
            ).fetchone()
            assert differing is None, (name, differing[:5])
            assert holding > 1_000, name


@pytest.mark.parametrize(
    ("line", "lenient"),
    [
        ('{"tags":["a","b"]}', False),  # strings side by side: blanked, not deleted
        ('["a" ,"b"]', False),
        ('{"a":1,"b":"c"}', False),
        ('{"a":"x\\\\",}', True),
        ('{"a":[1,\t\r ]}', True),
        ('{"a":[1,\n]}', True),  # JSON's whitespace, though no line holds a line break
        ('{"a":[1,\f]}', False),  # \f is not JSON's
        ('{"a":-INF}', True),
        ('{"a":"-INF"}', False),
    ],
)
def test_lenient_json_reads_strings_and_whitespace_as_json_does(line, lenient):
    with duckdb.connect() as conn:
        [(found,)] = conn.execute(
            f"SELECT {rules.lenient_json(DUCKDB, 'line')} FROM (SELECT ? AS line)", [line]
        ).fetchall()
    assert found is lenient
