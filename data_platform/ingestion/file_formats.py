"""How a line of each landing-file format becomes a typed record or a reason to reject it, in
DuckDB's SQL. The rules themselves are `record_rules`'; Spark renders them in `spark_formats`.

Each format is one SQL query over `_file_lines(file_index, line_number, line)` (a file's
non-blank, non-header lines) that returns each line's file and number, the raw table's contract
columns, `_rescued`, `is_valid`, and `error` (every reason the record is rejected; null exactly
when `is_valid`). All rules run inside DuckDB: no Python per record.

That query diagnoses; most lines need no diagnosis. A format may also have a fast path
(`fast_sql`): each line is parsed once, and the same checks, over what that parse found, pick
out the lines that are certainly valid. Only the lines it does not vouch for go through the
diagnosing query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from data_platform.ingestion import record_rules as rules
from data_platform.ingestion.file_lines import header_without_record
from data_platform.ingestion.parked_lines import PARK_LINE
from data_platform.ingestion.record_rules import EVENT_FIELD_NAMES, INTEGER_FIELDS
from data_platform.ingestion.tables import EVENTS, PAYMENTS, RawTable
from data_platform.resources.landing import LandingFile


@dataclass(frozen=True)
class FileFormat:
    """A source of landing files: where its files live and how their lines parse."""

    source: str
    table: RawTable
    suffixes: tuple[str, ...]
    # 1 when a file's first non-blank line is its header, 0 when it has none. Blank lines are
    # ignored before the header as anywhere (taken as line 1, a blank header dead-lettered
    # every row, and the real header with them); line numbers still count every line.
    header_lines: int
    parse_sql: str
    # A query over `_file_lines` (here every line after the header, blank ones included)
    # returning `file_index`, `line_number` and the contract columns of the records it vouches
    # for, which hands every other line to `park_line` (`parked_lines`): the diagnosing
    # `parse_sql` then sees only those.
    fast_sql: str | None = None
    # The fast path with no validity test before the parse, for lines that merely look like a
    # record: the parser then fails the statement on one that is malformed, and the run starts
    # over with `fast_sql`. It vouches for the lines `fast_sql` does but those padded with
    # spaces outside their braces (left to the diagnosis), or fails.
    trusting_fast_sql: str | None = None
    # How a record written spaced begins, for the fast path's guess (`SPACED_JSON`).
    spaced_start: str | None = None
    # The columns the header line must name: a file whose header line lacks one and that has
    # no record after it is one dead letter (`headerless`).
    header_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Which line is the header is known only once the blank lines before it are read, and
        # a fast path reads every line as a record: it could vouch for a header.
        if self.header_lines not in (0, 1) or (self.header_lines and self.fast_sql):
            raise ValueError(f"{self.source}: a header is one line, in a format with no fast path")

    @property
    def contract_columns(self) -> list[str]:
        lineage = {"_rescued", "_source_file", "_line_number", "_loaded_at", "dt"}
        return [c for c in self.table.column_names if c not in lineage]

    def misnamed(self, file: LandingFile) -> str | None:
        """Why a file under one of this source's day folders is not read, by its name or place,
        or None when it is read. Such a file is dead-lettered whole with this reason: ignored,
        it was in no table, no dead letter and no check, as if it had never landed."""
        folder, _, name = file.key.rpartition("/")
        if file.unlisted:
            return file.unlisted
        if not file.name_is_utf8:
            return (
                "the file's name is not UTF-8 text (shown with \\x escapes), so no reader can "
                "name it: rename it, then re-run the day"
            )
        names = " or ".join(f"*{suffix}" for suffix in self.suffixes)
        if folder.count("/") > 1:
            day_folder = "/".join(file.key.split("/")[:2])
            return (
                f"the file is in a subfolder of its day folder, where nothing is read: move it "
                f"into {day_folder}/ named {names}, then re-run the day"
            )
        if not name.endswith(self.suffixes):
            return (
                f"the file name does not end in {names} (exactly, lowercase), so it is not "
                f"read as {self.source}: land it under such a name, then re-run the day"
            )
        return None

    def headerless(self, path: Path) -> str | None:
        """Why a readable file is one dead letter: no record follows its header line (its first
        non-blank line), which is no header (it holds a CR, or lacks a column), or it has no
        such line. Its records were otherwise in no table, no dead letter and no check: a file
        whose lines end in CR only (one line, all of it the header), or a one-row export
        without its header (the row read as the header)."""
        if not self.header_columns:
            return None
        first = header_without_record(path)
        if first is None:
            return None
        if not first:
            # Read as a header, the empty line lacked every column: "a data row where the
            # header should be?" sent a person looking for a row that is not there.
            return (
                "the file is empty (no header line and no record): an export of a day without "
                "payments still writes its header line; export it again, then re-run the day"
            )
        if "\r" in first:
            return (
                "the file has no record after its first line, which holds CRs: lines ending in "
                'CR only (classic Mac, Excel\'s "CSV (Macintosh)")? Export it with LF or CRLF '
                "line ends, then re-run the day"
            )
        named = {cell.strip().strip('"').strip().lower() for cell in first.split(",")}
        missing = [column for column in self.header_columns if column not in named]
        if not missing:
            return None  # a header with no rows: an export of a day without any
        return (
            f"the file has no record, and its first line, read as the header, lacks "
            f"{', '.join(missing)}: a data row where the header should be? Export it with its "
            "header line, then re-run the day"
        )


def _sql_list(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _csv_position(name: str) -> str:
    return f"list_position(header, '{name}')"


def _common_spelling(text: str) -> str:
    """SQL true for `text` spelled as most timestamps are (JavaScript's toISOString, DuckDB's
    own %g: 2026-01-05T10:00:00.000Z), told without the grammar's regexp: that costs 0.2-0.35
    CPU-s per 1M lines, on a clean day's fast path; these tests about 0.1, what the checks
    they replaced cost (no change measured on the fast path). The shape fixes every
    separator; what DuckDB's cast reads in it beyond the grammar is a year opening with a
    space or a sign, an hour opening with a space, and hour 24 (a test holds it): the first
    character is a digit and the hour 00-23, and the year is not 0000 (`rules.YEAR`). Every
    other out-of-range field (month 13, minute 60, ...) the cast refuses, as the grammar does."""
    return (
        f"({text} LIKE '____-__-__T__:__:__.___Z' AND {text} BETWEEN '0001' AND ':' "
        f"AND substr({text}, 12, 2) BETWEEN '00' AND '23')"
    )


class DuckDBDialect:
    """`record_rules.Dialect` in DuckDB's SQL."""

    def full_match(self, text: str, pattern: str) -> str:
        return f"regexp_full_match({text}, {self.pattern(pattern)})"

    def matches(self, text: str, pattern: str) -> str:
        return f"regexp_matches({text}, {self.pattern(pattern)})"

    def try_number(self, text: str, sql_type: str) -> str:
        return f"TRY_CAST({text} AS {sql_type})"

    def character(self, code_point: int) -> str:
        return f"chr({code_point})"

    def try_utc_timestamp(self, text: str) -> str:
        # The instant's microseconds, not AT TIME ZONE 'UTC' (an ICU calendar per row: 0.1-0.4
        # CPU-s per 1M lines). Only text in the grammar is cast: DuckDB's cast also reads
        # 10:00Z, 24:00:00, year 10000, +01:60, 'epoch' and 'infinity', which Spark's refuses.
        # The grammar allows spaces around the text, as Spark's cast trims them; DuckDB's cast
        # refuses them after a date or a time without zone ("2026-01-05 "): trimmed first.
        spaces = " || ".join(self.character(c) for c in rules.SPACE_CODE_POINTS)

        def utc(value: str) -> str:
            return f"make_timestamp(epoch_us(TRY_CAST({value} AS TIMESTAMPTZ)))"

        return (
            f"CASE WHEN {_common_spelling(text)} THEN {utc(text)} "
            f"WHEN {self.full_match(text, rules.TIMESTAMP_GRAMMAR)} "
            f"THEN {rules.within_years(utc(f'trim({text}, {spaces})'))} END"
        )

    def has_column(self, name: str) -> str:
        return f"({_csv_position(name)} IS NOT NULL)"

    def cell(self, name: str) -> str:
        # Spaces only, as Spark's trim(): DuckDB's trim() also strips Unicode spaces (a no-break
        # space after a payment_id, an amount or a header name), so a row loaded trimmed on
        # DuckDB was stored untrimmed or refused on Spark (a fuzz found it).
        return f"NULLIF(trim(cells[{_csv_position(name)}], ' '), '')"

    def code_point(self, character: str) -> str:
        return f"unicode({character})"

    def hex4(self, number: str) -> str:
        return f"printf('%04X', {number})"

    def pattern(self, pattern: str) -> str:
        return f"'{pattern}'"  # DuckDB's literals take a backslash as it is

    def replace_all(self, text: str, pattern: str, replacement: str) -> str:
        return f"regexp_replace({text}, {self.pattern(pattern)}, '{replacement}', 'g')"

    def byte_length(self, text: str) -> str:
        return f"strlen({text})"

    def max_depth(self, brackets: str) -> str:
        # After the j-th `[`, at position p, the depth is j - (p - j): the greatest of these.
        # Lambdas over the whole list, not list_reduce's step per character (about 3x slower).
        return (
            f"list_max(list_transform(list_filter(list_transform(string_split({brackets}, ''), "
            "lambda c, i: CASE WHEN c = '[' THEN i END), lambda p: p IS NOT NULL), "
            "lambda p, j: 2 * j - p))"
        )

    def first_closed(self, brackets: str) -> str:
        # The j-th `]`, at position p, has p - j `[` before it: the depth is back to 0 where
        # p = 2j (the text opens with `[`, so it is never below 0 before).
        return (
            f"list_min(list_filter(list_transform(list_filter(list_transform("
            f"string_split({brackets}, ''), lambda c, i: CASE WHEN c = ']' THEN i END), "
            "lambda p: p IS NOT NULL), lambda p, j: CASE WHEN p = 2 * j THEN p END), "
            "lambda p: p IS NOT NULL))"
        )

    def first_match(self, text: str, pattern: str, condition: Callable[[str], str]) -> str:
        return (
            f"list_filter(regexp_extract_all({text}, {self.pattern(pattern)}), "
            f"lambda m: {condition('m')})[1]"
        )


DUCKDB = DuckDBDialect()
_EVENT_CHECKS = rules.event_checks(DUCKDB)
# One multi-path extraction per line returns every contract field as a small JSON fragment,
# whose type is then cheap to check (measured: about 5x faster than json_transform to a struct).
_EVENT_PATHS = "[" + ", ".join(f"'$.\"{f}\"'" for f in EVENT_FIELD_NAMES) + "]"
_EVENT_NULLS = "{" + ", ".join(f'"{f}": null' for f in EVENT_FIELD_NAMES) + "}"

# Each fragment, its JSON type and its text are computed once, in their own projection: the
# checks and the values below refer to them by name (inlined expressions cost 3x here).


def _kind(fragment: str, field: str) -> str:
    """A fragment's kind. json_extract minifies, so its first character tells (json_type()
    would parse it again: ~0.1 s per 1M lines for six fields); integers are told apart, with
    json_type(), only where a rule needs it."""
    if field in INTEGER_FIELDS:
        return (
            f"CASE WHEN json_type({fragment}) IN ('BIGINT', 'UBIGINT') THEN 'integer' "
            f"ELSE {rules.json_kind(fragment)} END"
        )
    return rules.json_kind(fragment)


def _fragment_columns(fragment: str, field: str) -> str:
    return (
        f"{fragment}::VARCHAR AS j_{field}, {_kind(fragment, field)} AS t_{field}, "
        f"{fragment}->>'$' AS s_{field}"
    )


_EVENT_FRAGMENTS = ",\n        ".join(
    _fragment_columns(f"v[{i}]", f) for i, f in enumerate(EVENT_FIELD_NAMES, start=1)
)
_EVENT_TIMESTAMPS = f"{DUCKDB.try_utc_timestamp('s_occurred_at')} AS ts_occurred_at"
_EVENT_VALUES = rules.event_values(DUCKDB)


def _repeated(names: str) -> str:
    """The names a list holds more than once, sorted, quoted and ', '-joined; NULL when none.
    Quoted, so that an empty name given twice (a header ending `,,`) is not read as none.
    Found as equal neighbours once sorted: each name compared with every other took 5.1 s for
    a header of 40,000 columns (20 s at 80,000: quadratic, inside the day's write), 0.01 s so."""
    return (
        "nullif(array_to_string(list_transform(list_sort(list_distinct(list_transform("
        f"list_filter(list_zip(list_sort({names}), list_sort({names})[2:]), "
        "lambda p: p[1] = p[2]), lambda p: p[1]))), lambda k: '\"' || k || '\"'), ', '), '')"
    )


_EVENT_RESCUED = f"CASE WHEN len(extra_keys) > 0 THEN json_merge_patch(line, '{_EVENT_NULLS}') END"

# DuckDB's JSON reader (yyjson) is lenient: it takes NaN, Infinity and trailing commas, which
# JSON (RFC 8259) and Spark's parser refuse. A line holding one outside its strings is "not
# valid JSON" on both engines, by the rule that names its reason (`record_rules.lenient_json`).
_LENIENT_JSON = rules.lenient_json(DUCKDB, "line")
# The fast path vouches for a line only if its properties (minified by the extraction: no
# trailing comma is left in them) hold neither word in any ASCII case (yyjson takes `nAn`,
# `iNF`), nor a number that may be beyond a 64-bit float (`record_rules.MAYBE_BEYOND_DOUBLE`),
# which yyjson keeps as written (1e400) and the diagnosis refuses (`record_rules.BEYOND_DOUBLE`);
# a string that does goes to the diagnosis. One regexp for the three, the diagnosis' own words
# (`record_rules.NON_NUMERIC`): RE2 scans once whatever the alternatives, 0.16 CPU-s per 1M
# properties against 0.26 for the number's regexp after two ILIKEs (one thread, medians of 7).
_PROPERTIES = f"v[{EVENT_FIELD_NAMES.index('properties') + 1}]"
_TOO_DEEP = rules.too_deep(DUCKDB, "line")
_LONG_NUMBER = rules.long_number(DUCKDB, "line")
_NUMBERS_READ_ALIKE = (
    f"NOT coalesce(regexp_matches({_PROPERTIES}, "
    f"'{rules.NON_NUMERIC}|{rules.MAYBE_BEYOND_DOUBLE}'), false)"
)

EVENTS_SQL = f"""
WITH objects AS (
    SELECT file_index, line_number, line,
        json_valid(line) AND NOT {_LENIENT_JSON} AS is_json,
        is_json AND {rules.OPENS_AN_OBJECT} AS is_object,
        {_TOO_DEEP} AS too_deep,
        {_LONG_NUMBER} AS long_number
    FROM _file_lines
),
fields AS (
    SELECT *,
        CASE WHEN is_object THEN json_extract(line, {_EVENT_PATHS}) END AS v,
        CASE WHEN is_object THEN json_keys(line) END AS keys
    FROM objects
),
fragments AS (
    SELECT file_index, line_number, line, is_json, is_object, too_deep, long_number,
        list_filter(keys, lambda k: k NOT IN ({_sql_list(EVENT_FIELD_NAMES)})) AS extra_keys,
        {_repeated("keys")} AS repeated_keys,
        CASE WHEN is_object THEN {rules.beyond_double(DUCKDB, "line")} END AS beyond_double,
        {_EVENT_FRAGMENTS}
    FROM fields
),
typed AS (
    SELECT *, {_EVENT_TIMESTAMPS} FROM fragments
)
{rules.event_result(DUCKDB, rules.json_kind("json(line)::VARCHAR"), _EVENT_RESCUED)}
FROM typed
"""

_EXTRACTED = [f"v[{i}]" for i in range(1, len(EVENT_FIELD_NAMES) + 1)]
# Set per group of files (`files.py`): whether the fast path compares its lines with their
# json.dumps-spaced spelling first (`record_rules.spelled_back`). Unset, it reads NULL: minified.
SPACED_JSON = "data_platform_spaced_json"
_SPELLED_BACK = rules.spelled_back(
    "line", _EXTRACTED, concat_skips_nulls=True, spaced=f"getvariable('{SPACED_JSON}')"
)
# A spelled line holds the value bare: an integer that fits BIGINT is exactly the text of its
# BIGINT (-0, 1e2 or 12.0 are not, and are left to the diagnosis). Cheaper than parsing the
# value again with json_type() (0.17 CPU-s per 1M lines); any other kind fails the checks.
_EVENT_VOUCHED = rules.vouched_event_columns(
    _EXTRACTED,
    lambda value: (
        f"CASE WHEN CAST(TRY_CAST({value} AS BIGINT) AS VARCHAR) = {value} THEN 'integer' END"
    ),
)


# The fast path: one extraction per line, a string comparison, the same checks. It must run
# with DuckDB's filter pushdown off: pushed below the projection, the filter inlines `v` into
# every reference and extracts it again for each (measured: 7.7 vs 1.6 CPU-s per 1M lines).
# `parses`: which lines are parsed; the others (blank ones included) are never spelled back,
# so never vouched for. Every line not vouched for is handed to `park_line` (`parked_lines`).
def _events_fast_sql(parses: str) -> str:
    return f"""
WITH fields AS (
    SELECT file_index, line_number, line,
        CASE WHEN {parses} THEN json_extract_string(line, {_EVENT_PATHS}) END AS v
    FROM _file_lines
),
fragments AS (
    SELECT file_index, line_number, line,
        {_SPELLED_BACK} AND {_NUMBERS_READ_ALIKE}
            AND NOT {_TOO_DEEP} AND NOT {_LONG_NUMBER} AS spelled_back,
        {_EVENT_VOUCHED}
    FROM fields
),
typed AS (
    SELECT *, {_EVENT_TIMESTAMPS} FROM fragments
)
SELECT file_index, line_number, {_EVENT_VALUES}
FROM typed
WHERE CASE WHEN spelled_back AND {rules.passes(_EVENT_CHECKS)} THEN true
    ELSE {PARK_LINE}(file_index, line_number, line) END
"""


# json_valid() first costs less than try() around the extraction (0.2 vs 0.3 CPU-s per 1M
# lines), and nothing when the parse is trusted: it takes only lines that begin with `{` and end
# with `}`, as spellings do, and raises on one of those that is malformed (json_valid() and the
# extraction's parser agree on every line: a test holds it). 0.1 s of a clean day's 1.5.
EVENTS_FAST_SQL = _events_fast_sql("json_valid(line)")
EVENTS_TRUSTING_FAST_SQL = _events_fast_sql("starts_with(line, '{') AND ends_with(line, '}')")

# One CSV field, quoted (with "" escapes) or bare, matched in `',' || line` (FIELDED_LINE): each
# field then starts with its comma, so no match is empty (after an empty match at the start,
# the regex engines skipped a field: ',a' read as one). A bare field holds no quote: a line its
# fields do not spell back whole (`"p2"x`, an unclosed quote) has malformed quoting. RE2's;
# Spark's is `spark_formats.SPARK_CSV_FIELD`, the same fields of every well-quoted line.
CSV_FIELD = r""",("(?:[^"]|"")*"|[^,"]*)"""

# The columns the header names (`record_rules.UNNAMED_VALUE`: an unnamed one holds nothing).
_NAMED = "list_filter(header, lambda h: h <> '')"

_PAYMENT_RESCUED = """CASE WHEN repeated_columns IS NULL AND len(extra_positions) > 0
    THEN to_json(map_from_entries(
        list_transform(extra_positions, lambda i: {'k': header[i], 'v': cells[i]})
    )) END"""

# A CSV line's fields as written (in `line`, the header's or a row's), and whether they spell
# the line back whole (its quoting is not malformed).
_FIELDS = f"regexp_extract_all({rules.FIELDED_LINE}, '{CSV_FIELD}', 1)"
_WELL_QUOTED = (
    f"array_to_string(regexp_extract_all({rules.FIELDED_LINE}, '{CSV_FIELD}', 0), '') "
    f"= {rules.FIELDED_LINE}"
)

# `_file_header.utf8`: whether the header line is valid UTF-8 (`file_lines.expose_leftovers`).
PAYMENTS_SQL = f"""
WITH header AS (
    SELECT file_index, line_number AS header_line_number, utf8 AS header_utf8,
        {rules.looks_blank(DUCKDB, "line")} AS header_spaces, list_transform(
        {_FIELDS},
        lambda h: lower(trim(replace(trim(h, '"'), '""', '"'), ' '))
    ) AS header,
        coalesce({_WELL_QUOTED}, true) AS header_well_quoted
    FROM _file_header
),
header_columns AS (
    SELECT *, {_repeated(_NAMED)} AS repeated_columns FROM header
),
split AS (
    SELECT file_index, line_number, line, header, header_line_number, header_utf8,
        header_spaces, header_well_quoted, repeated_columns,
        list_transform(
            {_FIELDS},
            lambda c: CASE WHEN starts_with(c, '"') THEN replace(c[2:-2], '""', '"') ELSE c END
        ) AS cells,
        {_WELL_QUOTED} AS well_quoted
    FROM _file_lines JOIN header_columns USING (file_index)
),
unnamed AS (
    SELECT *,
        list_filter(
            range(1, len(header) + 1),
            lambda i: header[i] = '' AND coalesce(trim(cells[i], ' '), '') <> ''
        )[1] AS unnamed_position
    FROM split
),
extras AS (
    SELECT *,
        cells[unnamed_position] AS unnamed_value,
        list_filter(
            range(1, len(header) + 1),
            lambda i: header[i] NOT IN ({_sql_list(["", *rules.PAYMENT_FIELDS])})
        ) AS extra_positions
    FROM unnamed
)
{rules.payment_result(DUCKDB, "len(cells)", "len(header)", _PAYMENT_RESCUED)}
FROM extras
"""

EVENT_FILES = FileFormat(
    "events",
    EVENTS,
    (".jsonl", ".jsonl.gz"),
    0,
    EVENTS_SQL,
    EVENTS_FAST_SQL,
    EVENTS_TRUSTING_FAST_SQL,
    spaced_start=rules.SPACED_EVENT_START,
)
PAYMENT_FILES = FileFormat(
    "payments",
    PAYMENTS,
    (".csv", ".csv.gz"),
    1,
    PAYMENTS_SQL,
    header_columns=tuple(rules.PAYMENT_FIELDS),
)
