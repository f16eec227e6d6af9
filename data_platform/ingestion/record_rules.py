"""The contract rules of each landing-file format, stated once and rendered for every engine.

A rule is a condition on a record and the reason a person reads when it fails. The conditions
are written over named columns that each engine's parsing query provides, with the few
functions whose spelling differs between engines asked of a `Dialect`:

- a JSON line's fields arrive as `j_<field>` (the field's minified JSON text), `t_<field>` (its
  kind: one of `JSON_KINDS`, NULL when the key is absent) and `s_<field>` (a string's value,
  else the JSON text); a timestamp field also as `ts_<field>`, parsed (NULL when it is not one);
- a JSON object line also has `repeated_keys`: its top-level keys given more than once, sorted
  and ', '-joined, NULL when none (JSON leaves their meaning open: DuckDB's reader keeps the
  first value, Spark's the last, so such a line is refused, never guessed);
- a CSV row's cells are asked of the dialect by column name, through the file's header.

DuckDB (`file_formats`) and Spark (`spark_formats`) render these same lists into their SQL;
the reasons are the same text on both, and so are the dead letters.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# The kinds of a JSON value, in JSON's own words (RFC 8259), integers told apart from numbers.
JSON_KINDS = ("string", "integer", "number", "object", "array", "boolean", "null")
# The one timestamp grammar of every engine, checked before its cast (`Dialect.try_utc_timestamp`):
# ISO 8601's extended calendar form, a date alone or with a time of day (seconds and a fraction
# of up to 9 digits optional), then Z or a UTC offset below 18 hours (no zone has more). Each
# engine's cast took forms the other's refused: a time without seconds, 24:00:00, year 10000
# and +01:60 on DuckDB; a zone name or UTC glued to the time on Spark; +99:00 applied by
# DuckDB, four days off. Zone names are refused on both: DuckDB reads them in any case
# (europe/paris), Spark only as spelled. Only text the grammar matches reaches either cast, so
# both give the same instant or none. The spaces DuckDB's cast skips are allowed around it.
# RE2 and Java read it alike (backslashes as `Dialect.pattern` takes them).
SPACES = r"[ \t\n\x0B\f\r]*"
# The same characters, as code points (an engine trimming them before its cast).
SPACE_CODE_POINTS = (32, 9, 10, 11, 12, 13)
_TIME_OF_DAY = "([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.][0-9]{1,9})?)?"
_ZONE = "Z|[+-](0[0-9]|1[0-7])(:?[0-5][0-9])?"
# Years 0001-9999: Python's datetime holds no other (pyspark's collect() of year 0 raised, and so
# did anything reading such a row into Python), though both engines' casts read year 0 alike.
YEAR = "([0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})"
# The same bound on the instant once its offset is applied (9999-12-31T23:00:00-05:00 is year
# 10000 in UTC, 0001-01-01T00:30:00+01:00 year 0): SQL timestamp literals, UTC.
FIRST_INSTANT, LAST_INSTANT = "0001-01-01 00:00:00", "9999-12-31 23:59:59.999999"
TIMESTAMP_GRAMMAR = (
    f"{SPACES}{YEAR}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    f"([T ]{_TIME_OF_DAY}({_ZONE})?)?{SPACES}"
)
TIMESTAMP_EXAMPLE = (
    "an ISO-8601 timestamp such as 2026-01-05T10:00:00Z: YYYY-MM-DD, then T and hh:mm:ss "
    "(hours 00-23; seconds and a fraction optional), then Z or an offset such as +01:00 "
    "(under 18 hours), not a zone name; years 0001-9999, in UTC too"
)
# Spark's JSON parser (Jackson) refuses a value nested 1000 levels deep, and its queries wrap a
# line in one more level; DuckDB's reads any depth. A line nested deeper than this is refused
# on both, with its own reason. Nested N deep, a line has N opening and N closing brackets:
# shorter lines are never measured (the common path pays a length test).
MAX_DEPTH = 900
TOO_DEEP = (
    f"nested deeper than {MAX_DEPTH} levels of arrays and objects, more than both engines read "
    "alike: flatten the record"
)
# The longest number a line may hold outside its strings. Jackson (Spark's JSON reader) refuses
# a number of more than 1,000 digits (StreamReadConstraints: JVM-wide, no Spark setting), which
# yyjson reads: such a line was "not valid JSON" on Spark and a row on DuckDB (a fuzz found it).
# Jackson counts its own way (`0.` and 1,000 fraction digits pass; 999 integer digits and `.55`,
# or 1,000 and `.5`, do not), so both engines refuse from well inside it.
MAX_NUMBER_CHARS = 900
LONG_NUMBER = f"[-+.0-9eE]{{{MAX_NUMBER_CHARS + 1}}}"
LONG_NUMBER_LINE = (
    f"a number of more than {MAX_NUMBER_CHARS} characters, more than both engines read alike "
    "(the Spark reader refuses more than 1,000 digits): send it as a string"
)
# A line is blank when it holds only ASCII white space (`file_lines.BLANK`: Python's
# bytes.strip(), Java's \s), on every reader and both sources: the conservation check, Spark's
# and DuckDB's line filters and the Kafka sink all count so. Unicode's other White_Space
# characters (the space separators, category Zs, that staging trims as the dbt var
# `space_separators`; next line U+0085; the line and paragraph separators U+2028 and U+2029)
# make a line a record, which no format reads: refused with a reason naming one of them, for
# a line that looks empty (it read "row has 1 fields" or "truncated or malformed").
UNICODE_SPACES = "\x85" + "".join(
    chr(c) for c in range(0x80, 0x10000) if unicodedata.category(chr(c)) in ("Zs", "Zl", "Zp")
)
# Every White_Space character, as RE2 and Java read a class (\x{hhhh}: no invisible
# character written in the SQL).
_WHITE_SPACE_CLASS = r"[ \t\x0B\f\r" + "".join(f"\\x{{{ord(c):X}}}" for c in UNICODE_SPACES) + "]"
_UNICODE_SPACE = "[" + "".join(f"\\x{{{ord(c):X}}}" for c in UNICODE_SPACES) + "]"


def looks_blank(d: Dialect, line: str) -> str:
    """SQL of the name (`U+00A0`) of the first Unicode space of `line` when the line holds only
    white space (see UNICODE_SPACES; of a record, so not only ASCII), NULL otherwise."""
    first = d.first_match(line, _UNICODE_SPACE, lambda match: "true")
    return (
        f"CASE WHEN {d.full_match(line, f'{_WHITE_SPACE_CLASS}+')} "
        f"THEN 'U+' || {d.hex4(d.code_point(first))} END"
    )


_LOOKS_EMPTY = (
    "among them (a no-break space, a line separator, or another Unicode space: only ASCII "
    "spaces, tabs and line ends make a line blank)"
)


def looks_blank_reason(name: str) -> str:
    """SQL of the reason for a record holding only white space, `name` (SQL) its first Unicode
    space's (`looks_blank`)."""
    return (
        f"'the line holds only spaces, ' || {name} || ' {_LOOKS_EMPTY}, so it is a record with "
        "nothing in it: delete the line or leave it blank, then re-run the day'"
    )


INVALID_JSON = (
    "not valid JSON: the line is truncated or malformed; "
    "fix the emitter so each line is one complete JSON object"
)
# Two causes of invalid JSON a person would not guess from "truncated or malformed" (SQL
# literals: no single quote in them).
BOM_LINE = (
    "not valid JSON: the line starts with a byte order mark (U+FEFF), as files saved by "
    "Windows editors and then joined have; write UTF-8 without a BOM"
)
NUL_LINE = (
    "not valid JSON: the line holds a NUL character (byte 0), as a file cut short and padded "
    "with zeros, or a binary value, has; check how the file was written and sent"
)
# Two more that writers produce: a float written by a serializer that allows them (Python's
# json.dumps, Jackson's ALLOW_NON_NUMERIC_NUMBERS), and records run together or followed by a
# comment or a stray token.
NON_NUMERIC_LINE = (
    "not valid JSON: the line holds NaN or Infinity outside a string, which JSON does not "
    'allow; write null or a string ("NaN") instead'
)
TRAILING_COMMA_LINE = (
    "not valid JSON: a comma right before a closing } or ] (a trailing comma), which JSON does "
    "not allow; write the object or list without it"
)
TRAILING_TEXT_LINE = (
    "not valid JSON: text follows the JSON object on the line; write one object per line, "
    "with nothing after it"
)
# A run of the characters of JSON numbers, as it stands outside the strings of a valid line (a
# number, or the `e` of true or false), and the largest finite 64-bit float. RFC 8259 lets a
# reader limit the range of numbers, and each engine's does, its own way: DuckDB's (yyjson)
# keeps a number with a fraction or an exponent beyond it as written (1e400), Spark's (Jackson,
# VARIANT) reads it as the float infinity and writes the string "Infinity". No JSON function of
# Spark keeps the text (spark.sql.json.enableExactStringParsing changes none of them), so such
# a line is refused on both, its number named, instead of being stored two ways. An integer is
# kept as written by both, however long. A run, not a number's grammar: a pattern with a
# group after `[0-9]+` backtracks through every digit of a long integer, at every digit, in
# Java's regex.
NUMBER = "[-+.0-9eE]+"
INTEGER = "-?[0-9]+"
DOUBLE_MAX = "1.7976931348623157e308"


class Dialect(Protocol):
    """What an engine spells its own way; everything else in a rule is common SQL."""

    def full_match(self, text: str, pattern: str) -> str:
        """SQL true when the whole of `text` matches the regular expression `pattern`."""
        ...

    def matches(self, text: str, pattern: str) -> str:
        """SQL true when some part of `text` matches the regular expression `pattern` (cheaper
        than `full_match` with `.*` around it: 0.13 vs 0.67 CPU-s per 1M lines on DuckDB)."""
        ...

    def character(self, code_point: int) -> str:
        """SQL of the one-character string of `code_point` (any, NUL included)."""
        ...

    def try_number(self, text: str, sql_type: str) -> str:
        """`text` as `sql_type` (BIGINT, DECIMAL(p,s)), NULL when it is not one."""
        ...

    def try_utc_timestamp(self, text: str) -> str:
        """`text` as a timestamp normalised to UTC (offset applied, naive read as UTC); NULL
        when it is not in `TIMESTAMP_GRAMMAR`, whatever the engine's cast would read, or when
        the instant is outside `FIRST_INSTANT`..`LAST_INSTANT`."""
        ...

    def has_column(self, name: str) -> str:
        """SQL true when the CSV file's header names column `name`."""
        ...

    def pattern(self, pattern: str) -> str:
        """The SQL string literal of a regular expression (read alike by RE2 and Java)."""
        ...

    def replace_all(self, text: str, pattern: str, replacement: str) -> str:
        """`text` with every match of the regular expression `pattern` replaced by the literal
        `replacement` (no `$` or backslash in it: the engines read those their own ways)."""
        ...

    def first_match(self, text: str, pattern: str, condition: Callable[[str], str]) -> str:
        """The first match of the regular expression `pattern` in `text` for which the SQL
        `condition(match)` is true; NULL when none is."""
        ...

    def byte_length(self, text: str) -> str:
        """The length of `text` in UTF-8 bytes (cheap: no scan)."""
        ...

    def max_depth(self, brackets: str) -> str:
        """The greatest nesting depth of a text of `[` and `]` only: the most unclosed `[` at
        any point (NULL when there is none)."""
        ...

    def first_closed(self, brackets: str) -> str:
        """In a text of `[` and `]` only that opens with `[`, the (1-based) position of the `]`
        that closes it: where the depth is first back to 0 (NULL when it never is)."""
        ...

    def cell(self, name: str) -> str:
        """The trimmed text of the row's cell under header `name`, NULL when empty or absent."""
        ...

    def code_point(self, character: str) -> str:
        """SQL of the code point (an integer) of the first character of `character`."""
        ...

    def hex4(self, number: str) -> str:
        """SQL of the integer `number` in upper-case hexadecimal, at least 4 digits (0x2028:
        '2028', 0xA0: '00A0'), as Unicode names a code point."""
        ...


Check = tuple[str, str]  # (SQL condition that fails the record, SQL of the reason)


def failed(cond: str) -> str:
    """A check's condition, where an undecidable (NULL) outcome counts as passed."""
    return f"coalesce(({cond}), false)"


def problems(checks: list[Check]) -> str:
    """SQL for the '; '-joined reasons of every failed check, or NULL when all pass."""
    parts = ", ".join(f"CASE WHEN {failed(cond)} THEN {msg} END" for cond, msg in checks)
    return f"NULLIF(concat_ws('; ', {parts}), '')"


def passes(checks: list[Check]) -> str:
    """SQL true when no check fails: the cheap test a loading pass filters on."""
    return "NOT (" + " OR ".join(failed(cond) for cond, _ in checks) + ")"


def quoted(expr: str) -> str:
    """A value shown in a reason: quoted, and cut to 80 characters."""
    return f"'\"' || left({expr}, 80) || '\"'"


def json_kind(fragment: str) -> str:
    """The kind of a minified JSON fragment, read from its first character ('number' for every
    number: `JsonField.kind` says where integers must be told apart)."""
    return (
        f"CASE WHEN {fragment} IS NOT NULL THEN CASE left({fragment}, 1) "
        "WHEN '\"' THEN 'string' WHEN '{' THEN 'object' WHEN '[' THEN 'array' "
        "WHEN 'n' THEN 'null' WHEN 't' THEN 'boolean' WHEN 'f' THEN 'boolean' "
        "ELSE 'number' END END"
    )


@dataclass(frozen=True)
class JsonField:
    """A contract field of a JSON line: its name, the kind it must have, whether it may be absent."""

    name: str
    kind: str  # "string", "digits" (a 64-bit integer or a string of digits), "timestamp", "object"
    required: bool

    @property
    def expected(self) -> str:
        return {
            "string": "a string",
            "digits": "a 64-bit integer, as a number or a string of digits",
            "timestamp": TIMESTAMP_EXAMPLE,
            "object": "a JSON object",
        }[self.kind] + ("" if self.required else " or null")

    def is_valid_kind(self, d: Dialect) -> str:
        """SQL true when the present, non-null value has the kind the contract asks."""
        t, s = f"t_{self.name}", f"s_{self.name}"
        return {
            "string": f"{t} = 'string'",
            # An integer beyond 64 bits has no BIGINT: refused, not loaded as NULL; a string
            # of digits is held to the same range (it was up to 18 digits: 19-digit ids that
            # load as numbers were refused as strings).
            "digits": f"({t} = 'integer' OR ({t} = 'string' AND {d.full_match(s, '[0-9]+')})) "
            f"AND {d.try_number(s, 'BIGINT')} IS NOT NULL",
            "timestamp": f"{t} = 'string' AND ts_{self.name} IS NOT NULL",
            "object": f"{t} = 'object'",
        }[self.kind]

    def checks(self, d: Dialect) -> list[Check]:
        t = f"t_{self.name}"
        present = f"{t} IS NOT NULL AND {t} <> 'null'"
        # A free-form object may carry personal data: its kind is named, not its text (the
        # reasons are shown in the dead-letter checks' metadata; the line is in the dead letter).
        got = (
            f"{t} || ' (its text is not shown: it may hold personal data)'"
            if self.kind == "object"
            else f"left(j_{self.name}, 80)"
        )
        typed = (
            f"{present} AND NOT ({self.is_valid_kind(d)})",
            f"'{self.name}: expected {self.expected}, got ' || {got}",
        )
        if not self.required:
            return [typed]
        return [(f"NOT ({present})", f"'{self.name}: required, missing or null'"), typed]


EVENT_FIELDS = (
    JsonField("event_id", "string", required=True),
    JsonField("user_id", "digits", required=True),
    JsonField("event_type", "string", required=True),
    JsonField("occurred_at", "timestamp", required=True),
    JsonField("session_id", "string", required=False),
    JsonField("properties", "object", required=False),
)
EVENT_FIELD_NAMES = [f.name for f in EVENT_FIELDS]
# Fields whose `t_` must tell an integer from another number.
INTEGER_FIELDS = {f.name for f in EVENT_FIELDS if f.kind == "digits"}


# Fields spelled as JSON strings, and fields that may be absent.
EVENT_STRINGS = {f.name for f in EVENT_FIELDS if f.kind in ("string", "timestamp")}
EVENT_OPTIONAL = {f.name for f in EVENT_FIELDS if not f.required}
EVENT_OBJECTS = {f.name for f in EVENT_FIELDS if f.kind == "object"}


def spelled_event_line(values: list[str], concat_skips_nulls: bool, spaced: bool = False) -> str:
    """SQL of an event line spelled back from its fields' extracted values (`values`, SQL, in
    contract order: a string's text, else the value's JSON text): minified, keys in contract
    order, strings quoted, absent optional fields left out. The fast paths of both engines.

    A line equal to it holds the contract's keys and nothing else, each of the kind spelled (a
    value that would need escaping cannot be spelled raw in valid JSON), so it has nothing to
    rescue: a proof, not a guess. Lines spelled otherwise (another key order, numbers such as
    12.50 that an extractor rewrites as 12.5) are simply not vouched for: the diagnosing query
    takes them, at its cost. Spaces between tokens are allowed: see `spelled_back`.

    `spaced`: spaced as `json.dumps` spaces (`{"a": 1, "b": {"c": [1, "d"]}}`), inside the
    object fields too (see `_spaced_object`).

    `concat_skips_nulls` (DuckDB's concat; Spark's gives NULL): an absent optional field is
    then pieces that are NULL, not a `||` string built and coalesced (0.04 s per 1M lines).
    """
    comma, colon = (", ", ": ") if spaced else (",", ":")
    parts: list[str] = []
    text = "{"  # the literal text before the next value
    for i, (field, value) in enumerate(zip(EVENT_FIELD_NAMES, values, strict=True)):
        quote = '"' if field in EVENT_STRINGS else ""
        key = (comma if i else "") + f'"{field}"{colon}{quote}'
        spelled = _spaced_object(value) if spaced and field in EVENT_OBJECTS else value
        if field not in EVENT_OPTIONAL:
            parts += [f"'{text}{key}'", spelled]
            text = quote
            continue
        parts.append(f"'{text}'")
        text = ""
        if concat_skips_nulls:
            present = f"CASE WHEN {value} IS NOT NULL THEN '{{}}' END"
            parts += [present.format(key), spelled, present.format(quote) if quote else "''"]
        else:
            closed = f" || '{quote}'" if quote else ""
            parts.append(f"coalesce('{key}' || {spelled}{closed}, '')")
    parts.append(f"'{text}}}'")
    return "concat(" + ", ".join(p for p in parts if p != "''") + ")"


def _spaced_object(minified: str) -> str:
    """SQL of a minified JSON object's text with a space after each `":` and `,"`: as
    `json.dumps` spaces it when every list in it holds strings only (`[1,2]` and `},{` stay
    unspaced: such a line gets the whole comparison).

    A string's text can hold either (an escaped quote before a colon, a string ending in a
    comma), where the line holds no added space: its object is extracted from that same text,
    each string kept as written, so a spelling with a space added inside a string is longer
    than the line there and never equals it. A line equal to its spaced spelling thus has
    spaces between tokens only, and equals its minified spelling spaces aside
    (`spelled_back`)."""
    return f"replace(replace({minified}, '\":', '\": '), ',\"', ', \"')"


# How a line spaced as `json.dumps` writes it begins (`spelled_event_line`, `spaced`).
SPACED_EVENT_START = f'{{"{EVENT_FIELD_NAMES[0]}": '


def spelled_back(line: str, values: list[str], concat_skips_nulls: bool, spaced: str | None) -> str:
    """SQL: whether `line` is its spelling (`spelled_event_line` of `values`), spaces aside: as
    most writers put them (`json.dumps`, `{"a": 1, "b": 2}`), every line would otherwise go to
    the diagnosis (measured: 8.6 CPU-s per 1M such events instead of about 2.5).

    Still a proof: a space between tokens means nothing in JSON, and the spelling is made of the
    line's own values, so the spaces inside a string are taken from both sides alike. An
    escape is not a space and is never spelled (the spelling has one backslash fewer per
    escape), and a key with a space in it is not the contract's key.

    The comparison without spaces costs most: DuckDB's replace() builds a string piece by piece,
    ~3,000 instructions for a spaced line of ~230 bytes, where an exact comparison with a
    spelling costs ~1,500. So each line is first compared exactly with one spelling, true only
    where the whole comparison is: the minified one, or the one spaced as `json.dumps` writes
    when `spaced` (SQL, a constant of the statement: a guess from the files' first lines, which
    changes what a line costs, never whether it is vouched for; None: minified only). Building
    both spellings for every line would cost a spaced line about what the whole comparison
    does. Measured (valgrind, instructions per line on DuckDB, 50,000 lines): spaced lines
    ~4,700 -> ~3,400, minified ones ~1,700 either way."""
    minified = spelled_event_line(values, concat_skips_nulls)
    first = minified
    if spaced is not None:
        spelled = spelled_event_line(values, concat_skips_nulls, spaced=True)
        first = f"CASE WHEN {spaced} THEN {spelled} ELSE {minified} END"
    return (
        f"CASE WHEN {line} = {first} THEN true "
        f"ELSE replace({line}, ' ', '') = replace({minified}, ' ', '') END"
    )


def vouched_event_columns(values: list[str], integer_kind: Callable[[str], str]) -> str:
    """The diagnosing query's j_/t_/s_ columns of every field (`values` as for
    `spelled_event_line`), for a line equal to its spelling: the spelling fixes each field's
    kind, so the same checks can run on them. `integer_kind(value)`: SQL of an integer field's
    kind, which each engine tells its own way."""
    columns = []
    for value, field in zip(values, EVENT_FIELD_NAMES, strict=True):
        if field in EVENT_STRINGS:
            kind = f"CASE WHEN {value} IS NOT NULL THEN 'string' END"
        elif field in INTEGER_FIELDS:
            kind = integer_kind(value)
        else:
            kind = json_kind(value)
        columns.append(f"{value} AS j_{field}, {kind} AS t_{field}, {value} AS s_{field}")
    return ",\n        ".join(columns)


# What a number beyond a 64-bit float has to look like: an exponent of three digits or more, on
# a number where a value starts (after `:`, `,` or `[` and JSON's whitespace: not `e123` in a
# string of hex digits, as ids are), or (its exponent under 100) 210 digits or more. A line
# without such text is never searched for one.
MAYBE_BEYOND_DOUBLE = r"[:,\[][ \t\r]*-?[0-9]+([.][0-9]+)?[eE][+]?[0-9]{3}|[0-9]{200}"


def beyond_double(d: Dialect, line: str) -> str:
    """SQL of the first number outside the strings of `line` beyond a 64-bit float's range
    (each engine's cast makes it infinite), NULL when none is: an event's `beyond_double`.
    Searched only in a line that may hold one (`MAYBE_BEYOND_DOUBLE`): 1M clean events all
    diagnosed on DuckDB took 6.8 -> 9.9 CPU-s searched, 7.0 -> 7.3 so gated (best of 3)."""
    number = d.first_match(
        outside_strings(d, line),
        NUMBER,
        lambda number: (
            f"abs({d.try_number(number, 'DOUBLE')}) > {DOUBLE_MAX} "
            f"AND NOT {d.full_match(number, INTEGER)}"
        ),
    )
    return f"CASE WHEN {d.full_match(line, f'(?s).*({MAYBE_BEYOND_DOUBLE}).*')} THEN {number} END"


# The reason of a line with a `beyond_double` (the fast paths never vouch for one). It comes
# before the fields' own: a field holding the number would show Spark's "Infinity" in them.
BEYOND_DOUBLE = (
    "'the number ' || "
    + quoted("beyond_double")
    + " || ' is beyond the range of a 64-bit float (about 1.8e308), which JSON readers turn "
    "into infinity or refuse: send it as a string'"
)


def within_years(instant: str) -> str:
    """SQL of the timestamp `instant` (UTC, written twice), NULL outside years 0001-9999: for
    the grammar's rare spellings (an offset may cross a year's bound), not for the common one,
    whose year the grammar bounds and whose Z keeps it."""
    return (
        f"CASE WHEN {instant} BETWEEN TIMESTAMP '{FIRST_INSTANT}' "
        f"AND TIMESTAMP '{LAST_INSTANT}' THEN {instant} END"
    )


def event_checks(d: Dialect) -> list[Check]:
    """Every rule of an event line that is a JSON object, in the order its reasons are listed."""
    return [check for field in EVENT_FIELDS for check in field.checks(d)]


def event_values(d: Dialect) -> str:
    """The contract columns of raw.events, from the fields' columns (NULL where invalid)."""
    return f"""s_event_id AS event_id,
    {d.try_number("s_user_id", "BIGINT")} AS user_id,
    s_event_type AS event_type,
    ts_occurred_at AS occurred_at,
    s_session_id AS session_id,
    CASE WHEN t_properties = 'object' THEN j_properties END AS properties"""


REPEATED_KEYS = (
    "'keys given more than once (' || repeated_keys || "
    "'): a record names each key once; fix the emitter'"
)


def _spaced(line: str) -> str:
    """SQL of `line` with JSON's whitespace as spaces, to trim (a line is split at line breaks,
    so tab and carriage return are left)."""
    return f"translate({line}, chr(9) || chr(13), '  ')"


def _trimmed(side: str, text: str) -> str:
    """SQL of `text` without its spaces on `side` (LEADING or TRAILING), on both engines alike:
    DuckDB's ltrim() and rtrim() also trim Unicode spaces (a no-break space after the object was
    "not valid JSON" on DuckDB and "text follows the JSON object" on Spark; a fuzz found it)."""
    return f"TRIM({side} ' ' FROM {_spaced(text)})"


# True when a JSON line's first character past JSON's whitespace opens an object.
OPENS_AN_OBJECT = f"left({_trimmed('LEADING', 'line')}, 1) = '{{'"


# A JSON escape (a backslash and the character after it), a string, and a string or a character
# that is no bracket: what `outside_strings` and `brackets` remove, in that order.
ESCAPE = r"(?s)\\."
STRING = '"[^"]*"'
STRING_OR_NO_BRACKET = rf"{STRING}|[^\[\]{{}}]"
# What `lenient_json` leaves of a string: a string still, so that the tokens either side of it
# stay apart (`["a","b"]` with its strings deleted reads `[,]`: a trailing comma).
BLANK_STRING = '""'
# A string, or one the line ends inside (cut short): neither's text is a token of the line. Kept,
# a cut `"note": "more info` was named "holds NaN or Infinity". (`\z`: the text's very end in
# RE2 and Java alike; Java's `$` also matches before a final CR.)
STRING_EVEN_CUT = rf'{STRING}|"[^"]*\z'


def outside_strings(d: Dialect, line: str, strings: str = STRING, blank: str = "") -> str:
    """SQL of `line` without its escapes, then with its strings (or what else `strings`
    matches; an unclosed string kept, as on both engines alike) replaced by `blank`: the same
    regular expressions on both engines, none repeating a group (Java's regex recurses once per
    repetition of a group: deep on a long line)."""
    return d.replace_all(d.replace_all(line, ESCAPE, ""), strings, blank)


def brackets(d: Dialect, line: str) -> str:
    """SQL of the brackets of `line` outside its strings (a bracket in a string is text), every
    one spelled `[` or `]`."""
    return f"translate({outside_strings(d, line, STRING_OR_NO_BRACKET)}, '{{}}', '[]')"


# What DuckDB's reader (yyjson) takes outside a string and JSON (RFC 8259) and Spark's reader
# refuse: NaN and Infinity, in any case (yyjson takes `nAn`, `iNF`, `-inf`), the only words
# there besides true, false and null; and a comma followed, past JSON's whitespace (space, tab,
# line feed, carriage return: not \f or \v, which yyjson refuses there too; no line holds a
# line feed, split at them), by a closing bracket, the trailing comma of JavaScript and Python
# literals. Neither matches a quote.
NON_NUMERIC = "(?i:nan|inf)"
TRAILING_COMMA = r",[ \t\n\r]*[\]}]"


def _maybe_non_numeric(line: str) -> str:
    """SQL true for every line holding `NON_NUMERIC`: ILIKE folds case for less than RE2's
    `(?i)` (0.23 vs 0.67 CPU-s per 1M lines on DuckDB)."""
    return f"{line} ILIKE '%nan%' OR {line} ILIKE '%inf%'"


def _outside_strings_holds(d: Dialect, line: str, pattern: str, maybe: str) -> str:
    """SQL true when `line`, its strings blanked, holds a match of `pattern` (which matches no
    quote). Blanking is the cost, so it is done only for a line that has an escape or passes
    `maybe`, a test every line holding `pattern` passes: a match outside the strings is text of
    the line itself unless dropping an escape made it (`na\\xn`). Measured on DuckDB, the
    simulator's defective day (1M lines) all diagnosed, CPU-s, median of 7: the screen (with
    json_valid) 2.96 before the rule was written once, 0.50 now; the whole diagnosis 8.5 -> 6.2.
    Every line holding an escape (as json.dumps writes non-ASCII text): 2.93 -> 3.22."""
    blanked = outside_strings(d, line, STRING_EVEN_CUT, blank=BLANK_STRING)
    return (
        f"CASE WHEN contains({line}, {d.character(92)}) OR {maybe} "
        f"THEN {d.matches(blanked, pattern)} ELSE false END"
    )


def lenient_json(d: Dialect, line: str) -> str:
    """SQL true when `line` holds NaN, Infinity or a trailing comma outside its strings: what
    DuckDB's reader takes and JSON does not, so DuckDB refuses such a line as Spark's reader
    does. Both in one test: it runs on every line DuckDB diagnoses that its reader takes, where
    `invalid_json` asks each (as its own reason) of refused lines only."""
    maybe = f"{_maybe_non_numeric(line)} OR {d.matches(line, TRAILING_COMMA)}"
    return _outside_strings_holds(d, line, f"{NON_NUMERIC}|{TRAILING_COMMA}", maybe)


def _non_numeric(d: Dialect, line: str) -> str:
    """SQL true when `line` holds NaN or Infinity outside its strings (see `lenient_json`)."""
    return _outside_strings_holds(d, line, NON_NUMERIC, _maybe_non_numeric(line))


def _trailing_comma(d: Dialect, line: str) -> str:
    """SQL true when `line` holds a trailing comma outside its strings (see `lenient_json`)."""
    return _outside_strings_holds(d, line, TRAILING_COMMA, d.matches(line, TRAILING_COMMA))


def _trailing_text(d: Dialect, line: str) -> str:
    """SQL true when the object `line` opens is closed before the line's end: something other
    than JSON's whitespace follows its closing brace (`{"a":1} x`), or another bracket does
    (`{"a":1}{"b":2}`, `{"a":1} "x"`: then the line does not end where its first object does)."""
    marks = brackets(d, line)
    closed = d.first_closed(marks)
    ends_in_brace = f"right({_trimmed('TRAILING', line)}, 1) = '}}'"
    return f"{closed} IS NOT NULL AND ({closed} < length({marks}) OR NOT {ends_in_brace})"


def invalid_json(d: Dialect) -> str:
    """SQL of the reason for a `line` that is not valid JSON, its cause named where plain. The
    causes are tested in this order, the first found named: a line with NaN after other text
    is named for its NaN, which has to go whatever else is wrong with it. Only lines already
    refused pay for these tests (a CASE branch of the diagnosis)."""
    bom, nul = d.character(0xFEFF), d.character(0)
    return (
        f"CASE WHEN left(line, 1) = {bom} THEN '{BOM_LINE}' "
        f"WHEN contains(line, {nul}) THEN '{NUL_LINE}' "
        f"WHEN {looks_blank(d, 'line')} IS NOT NULL "
        f"THEN {looks_blank_reason(looks_blank(d, 'line'))} "
        f"WHEN {_non_numeric(d, 'line')} THEN '{NON_NUMERIC_LINE}' "
        f"WHEN {_trailing_comma(d, 'line')} THEN '{TRAILING_COMMA_LINE}' "
        f"WHEN {OPENS_AN_OBJECT} AND {_trailing_text(d, 'line')} THEN '{TRAILING_TEXT_LINE}' "
        f"ELSE '{INVALID_JSON}' END"
    )


def too_deep(d: Dialect, line: str) -> str:
    """SQL true when `line` is nested deeper than `MAX_DEPTH` levels outside its strings.
    Measured only on a line long enough to be (see MAX_DEPTH)."""
    # CASE, not AND: neither engine is bound to skip the measure where the length test fails.
    return (
        f"CASE WHEN {d.byte_length(line)} >= {2 * MAX_DEPTH} "
        f"THEN coalesce({d.max_depth(brackets(d, line))} > {MAX_DEPTH}, false) ELSE false END"
    )


def long_number(d: Dialect, line: str) -> str:
    """SQL true when `line` holds a number of more than MAX_NUMBER_CHARS characters outside its
    strings. Searched only in a line long enough to hold one."""
    holds = _outside_strings_holds(d, line, LONG_NUMBER, d.matches(line, LONG_NUMBER))
    return f"CASE WHEN {d.byte_length(line)} > {MAX_NUMBER_CHARS} THEN {holds} ELSE false END"


def not_an_object(line_kind: str) -> str:
    """SQL of the reason for a line that is JSON but no object; `line_kind` is its kind."""
    return f"'not a JSON object (got ' || {line_kind} || '): each line must be one JSON object'"


def record_result(error: str, is_valid: str, values: str, rescued: str) -> str:
    """The SELECT list every format's query ends with, on every engine: the line, its reasons
    (`error`, a CASE body), whether it loads, the contract columns and `_rescued`."""
    return f"""SELECT
    file_index,
    line_number,
    line,
    CASE
        {error}
    END AS error,
    {is_valid} AS is_valid,
    {values},
    {rescued} AS _rescued"""


def event_result(d: Dialect, line_kind: str, rescued: str) -> str:
    """An event line's result columns; `line_kind` is the line's JSON kind, `rescued` its
    fields outside the contract (both in the engine's own SQL)."""
    checks = event_checks(d)
    return record_result(
        f"WHEN too_deep THEN '{TOO_DEEP}'\n"
        f"        WHEN long_number THEN '{LONG_NUMBER_LINE}'\n"
        f"        WHEN NOT is_json THEN {invalid_json(d)}\n"
        f"        WHEN NOT is_object THEN {not_an_object(line_kind)}\n"
        f"        WHEN repeated_keys IS NOT NULL THEN {REPEATED_KEYS}\n"
        f"        WHEN beyond_double IS NOT NULL THEN {BEYOND_DOUBLE}\n"
        f"        ELSE {problems(checks)}",
        "is_object AND NOT too_deep AND NOT long_number AND repeated_keys IS NULL "
        "AND beyond_double IS NULL "
        f"AND {passes(checks)}",
        event_values(d),
        rescued,
    )


PAYMENT_FIELDS = ["payment_id", "order_id", "amount", "currency", "status", "created_at"]
# Typed columns: (name, SQL type, what the reason says is expected, why a number spelled right
# is still refused).
PAYMENT_NUMBERS = [
    ("order_id", "BIGINT", "an integer", "is beyond the 64-bit integer range"),
    (
        "amount",
        "DECIMAL(18,4)",
        "a decimal number such as 12.50",
        "has more than 14 digits before the point or 4 after it (raw.payments holds "
        "DECIMAL(18,4), and a rounded amount is another payment): export it at that precision",
    ),
]
# A decimal number as text, before either engine's cast reads it (landing files' cells, and the
# app database's text in a number column). At most three exponent digits: DuckDB's cast gave
# up on `0e999999` (refused as too many digits), which Spark read as 0.
DECIMAL_SPELLING = "[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]{1,3})?"
# How a number cell may be spelled, checked before the cast: DuckDB's cast rounds 12.50 to the
# integer 13 and reads 1_000 and 0x10, which Spark refuses, so a payment of order 12.50 was
# loaded as one of order 13 on DuckDB and a dead letter on Spark.
_SPELLINGS = {
    "BIGINT": "[+-]?[0-9]+",
    "DECIMAL": DECIMAL_SPELLING,
}
# A non-zero digit before any exponent: the number is not zero, whatever its casts give.
_NON_ZERO = "^[^eE]*[1-9]"


def _mantissa_fits(d: Dialect, text: str, digits: int) -> str:
    """SQL true unless the number `text` spells has an exponent after more than `digits`
    digits. DuckDB's cast to DECIMAL(p,s) reads the digits before an exponent as a number of at
    most p - s digits, whatever the exponent: it refused 100000000000000e-14 (1) and
    0.000000000000001e15 as a DECIMAL(18,4), which Spark's read as 1. Refused on both."""
    digits_and_exponent = d.replace_all(text, "[^0-9eE]", "")
    return d.full_match(digits_and_exponent, f"[0-9]*|[0-9]{{0,{digits}}}[eE][0-9]*")


def _spelled(d: Dialect, text: str, sql_type: str) -> str:
    return d.full_match(text, _SPELLINGS[sql_type.split("(")[0]])


def _held_exactly(d: Dialect, text: str, sql_type: str) -> str:
    """SQL true when the number `text` spells is `sql_type`'s value as it is. Both engines'
    casts round a decimal to the type's scale (12.12345 -> 12.1235, -0.00001 -> 0: a refund
    read as nothing), so the cast is compared with the same text read at the widest scale that
    keeps the type's integer digits, and, for digits beyond even that scale (1e-27), as a
    DOUBLE; a value beyond the type's range casts to NULL. A value below even a DOUBLE's least
    (`0.` and 400 zeros then `1`) reads as 0 all three ways: a zero that is not spelled as one is
    refused as well."""
    cast = d.try_number(text, sql_type)
    if not sql_type.startswith("DECIMAL("):
        return f"{cast} IS NOT NULL"
    precision, scale = (int(n) for n in sql_type[len("DECIMAL(") : -1].split(","))
    wide = d.try_number(text, f"DECIMAL(38,{38 - (precision - scale)})")
    double = d.try_number(text, "DOUBLE")
    return (
        f"coalesce({cast} = {wide} AND CAST({cast} AS DOUBLE) = {double} "
        f"AND ({cast} <> 0 OR NOT {d.matches(text, _NON_ZERO)}) "
        f"AND {_mantissa_fits(d, text, precision - scale)}, false)"
    )


def cell_number(d: Dialect, text: str, sql_type: str) -> str:
    """A cell's text as `sql_type`, NULL unless spelled as a plain number of that kind. A row
    whose number the type would not hold exactly is refused by `payment_checks`, so its value
    is never stored."""
    return f"CASE WHEN {_spelled(d, text, sql_type)} THEN {d.try_number(text, sql_type)} END"


def payment_checks(d: Dialect) -> list[Check]:
    """Every rule of a payment row whose field count matches its header."""
    cell = d.cell
    return [
        *[
            (f"NOT {d.has_column(n)}", f"'{n}: column missing from the file header'")
            for n in PAYMENT_FIELDS
        ],
        *[
            (f"{d.has_column(n)} AND {cell(n)} IS NULL", f"'{n}: required, empty'")
            for n in PAYMENT_FIELDS
        ],
        *[
            check
            for n, sql_type, expected, beyond in PAYMENT_NUMBERS
            for check in (
                (
                    f"{cell(n)} IS NOT NULL AND NOT {_spelled(d, cell(n), sql_type)}",
                    f"'{n}: expected {expected}, got ' || {quoted(cell(n))}",
                ),
                (
                    f"{_spelled(d, cell(n), sql_type)} "
                    f"AND NOT {_held_exactly(d, cell(n), sql_type)}",
                    f"'{n}: ' || {quoted(cell(n))} || ' {beyond}'",
                ),
            )
        ],
        (
            f"{cell('created_at')} IS NOT NULL AND {d.try_utc_timestamp(cell('created_at'))} IS NULL",
            f"'created_at: expected {TIMESTAMP_EXAMPLE}, got ' || {quoted(cell('created_at'))}",
        ),
    ]


def payment_values(d: Dialect) -> str:
    """The contract columns of raw.payments, from the row's cells (NULL where invalid)."""
    cell = d.cell
    return f"""{cell("payment_id")} AS payment_id,
    {cell_number(d, cell("order_id"), "BIGINT")} AS order_id,
    {cell_number(d, cell("amount"), "DECIMAL(18,4)")} AS amount,
    {cell("currency")} AS currency,
    {cell("status")} AS status,
    {d.try_utc_timestamp(cell("created_at"))} AS created_at"""


def field_count_reason(cells: str, header: str) -> str:
    """SQL of the reason for a row with another number of fields than its header."""
    return (
        f"'row has ' || {cells} || ' fields but the header names ' || {header} "
        "|| ': fix the quoting or the delimiter of this row'"
    )


# A CSV line with a comma in front: what `CSV_FIELD` is matched in (see file_formats).
FIELDED_LINE = "concat(',', line)"
MALFORMED_QUOTING = (
    "'malformed CSV quoting: quote a field holding a comma or a quote, double each quote "
    "inside it, and close every quote'"
)
# The header's own quoting: its names are read with the same field pattern, and a name taken
# from a malformed header is a guess (`am"ount` read as `am`, a quote never closed as the rest of
# the line), which each engine's regex made its own way once the Spark one stopped backtracking
# (`spark_formats.SPARK_CSV_FIELD`). Every row of such a file is refused with this reason:
# "amount: column missing from the file header" sent a person to a header that names it.
# The header is the file's first non-blank line (blank lines before it are ignored, as
# anywhere): `header_line_number` is its number, which every reason about it names.
MALFORMED_HEADER_QUOTING = (
    "'malformed CSV quoting in the header (line ' || header_line_number || '), so its column "
    "names cannot be read: quote a name holding a comma or a quote, double each quote inside "
    "it, and close every quote; then re-run the day'"
)
# A header line holding only white space (see UNICODE_SPACES) names no column: the header is the
# first non-blank line, and such a line is not blank. `header_spaces` names its first Unicode
# space (NULL for any other header).
HEADER_SPACES_ONLY = (
    "'the header (line ' || header_line_number || ') holds only spaces, ' || header_spaces || "
    f"' {_LOOKS_EMPTY}, so it names no column: delete that line (the header is the first line "
    "that is not blank), then re-run the day'"
)
# A header holding bytes that are not UTF-8: its names would be read with U+FFFD in their place
# (an extra column's, `réf` in Latin-1, rescued as `r\ufffdf`, and nobody told; a contract
# column's reported missing from a header that names it). Every row of the file is refused.
HEADER_NOT_UTF8 = (
    "'the header (line ' || header_line_number || ') is not valid UTF-8 text, so its column "
    "names cannot be read: re-export the file as UTF-8, then re-run the day'"
)


REPEATED_COLUMNS = (
    "'the header names ' || repeated_columns || ' more than once, so which value is meant "
    "cannot be told: export each column once'"
)
# A column the header leaves unnamed (`a,,b`, or the `,,` a spreadsheet adds after the last
# column): its empty cells are nothing (not rescued, and never a repeated name), but a value
# under no name is refused, not guessed at: it is a column to name, or a cell shifted right by
# an unquoted comma (`12,50` under a header with an unnamed column last, whose cells then each
# sit one column off). `unnamed_position` is the first such column of the row, NULL when none,
# and `unnamed_value` its cell.
UNNAMED_VALUE = (
    "'column ' || unnamed_position || ' has no name in the header (line ' || "
    "header_line_number || ') but holds ' || " + quoted("unnamed_value") + " || ' on this "
    "row: name the column in the header (or leave its cells empty), or quote the cell before "
    "it if that cell holds a comma; then re-run the day'"
)


def payment_result(d: Dialect, cells: str, header: str, rescued: str) -> str:
    """A payment row's result columns; `cells` and `header` are their field counts. Columns:
    `header_line_number`, `header_utf8` (its header line is valid UTF-8), `header_spaces` (see
    HEADER_SPACES_ONLY), `header_well_quoted` and `well_quoted` (the header's and the row's
    fields spell their lines back whole), `repeated_columns` (the names its header gives twice,
    NULL when none) and `unnamed_position` / `unnamed_value` (see UNNAMED_VALUE)."""
    checks = payment_checks(d)
    return record_result(
        f"WHEN {looks_blank(d, 'line')} IS NOT NULL "
        f"THEN {looks_blank_reason(looks_blank(d, 'line'))}\n"
        f"        WHEN NOT header_utf8 THEN {HEADER_NOT_UTF8}\n"
        f"        WHEN header_spaces IS NOT NULL THEN {HEADER_SPACES_ONLY}\n"
        f"        WHEN NOT header_well_quoted THEN {MALFORMED_HEADER_QUOTING}\n"
        f"        WHEN repeated_columns IS NOT NULL THEN {REPEATED_COLUMNS}\n"
        f"        WHEN NOT well_quoted THEN {MALFORMED_QUOTING}\n"
        f"        WHEN {cells} <> {header} THEN {field_count_reason(cells, header)}\n"
        f"        WHEN unnamed_position IS NOT NULL THEN {UNNAMED_VALUE}\n"
        f"        ELSE {problems(checks)}",
        f"header_utf8 AND header_spaces IS NULL AND header_well_quoted "
        "AND repeated_columns IS NULL AND well_quoted "
        f"AND {cells} = {header} AND unnamed_position IS NULL AND {passes(checks)}",
        payment_values(d),
        rescued,
    )
