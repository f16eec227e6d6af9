"""How a line of each landing-file format becomes a typed record or a reason to reject it.

Each format is one SQL query over `_file_lines(file_index, line_number, line)` (the non-blank,
non-header lines of a day's files) that returns each line's file and number, the raw table's
contract columns, `_rescued`, `is_valid`, and `error` (every reason the record is rejected;
null exactly when `is_valid`). The loading pass filters on the cheap boolean; only rejected
lines pay for building the messages. All rules run inside DuckDB: no Python per record.
"""

from __future__ import annotations

from dataclasses import dataclass

from data_platform.ingestion.tables import EVENTS, PAYMENTS, RawTable


@dataclass(frozen=True)
class FileFormat:
    """A source of landing files: where its files live and how their lines parse."""

    source: str
    table: RawTable
    suffixes: tuple[str, ...]
    header_lines: int
    parse_sql: str

    @property
    def contract_columns(self) -> list[str]:
        lineage = {"_rescued", "_source_file", "_line_number", "_loaded_at", "dt"}
        return [c for c in self.table.column_names if c not in lineage]


def _sql_list(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _failed(cond: str) -> str:
    """A check's condition, where an undecidable (NULL) outcome counts as passed."""
    return f"coalesce(({cond}), false)"


def _problems(checks: list[tuple[str, str]]) -> str:
    """SQL for the '; '-joined messages of every failed check, or NULL when all pass."""
    parts = ", ".join(f"CASE WHEN {_failed(cond)} THEN {msg} END" for cond, msg in checks)
    return f"NULLIF(concat_ws('; ', {parts}), '')"


def _passes(checks: list[tuple[str, str]]) -> str:
    """SQL true when no check fails: the cheap test the loading pass filters on."""
    return "NOT (" + " OR ".join(_failed(cond) for cond, _ in checks) + ")"


def _quoted(expr: str) -> str:
    return f"'\"' || left({expr}, 80) || '\"'"


_EVENT_FIELDS = ["event_id", "user_id", "event_type", "occurred_at", "session_id", "properties"]
# One multi-path extraction per line returns every contract field as a small JSON fragment,
# whose type is then cheap to check (measured: about 5x faster than json_transform to a struct).
_EVENT_PATHS = "[" + ", ".join(f"'$.\"{f}\"'" for f in _EVENT_FIELDS) + "]"
_EVENT_NULLS = "{" + ", ".join(f'"{f}": null' for f in _EVENT_FIELDS) + "}"


def _required(name: str) -> tuple[str, str]:
    return (
        f"t_{name} IS NULL OR t_{name} = 'NULL'",
        f"'{name}: required, missing or null'",
    )


def _typed(name: str, ok: str, expected: str) -> tuple[str, str]:
    return (
        f"t_{name} IS NOT NULL AND t_{name} <> 'NULL' AND NOT ({ok})",
        f"'{name}: expected {expected}, got ' || left(j_{name}::VARCHAR, 80)",
    )


_EVENT_CHECKS = [
    _required("event_id"),
    _typed("event_id", "t_event_id = 'VARCHAR'", "a string"),
    _required("user_id"),
    _typed(
        "user_id",
        "t_user_id IN ('BIGINT', 'UBIGINT') "
        "OR (t_user_id = 'VARCHAR' AND regexp_full_match(s_user_id, '[0-9]{1,18}'))",
        "an integer or a string of digits",
    ),
    _required("event_type"),
    _typed("event_type", "t_event_type = 'VARCHAR'", "a string"),
    _required("occurred_at"),
    _typed(
        "occurred_at",
        "t_occurred_at = 'VARCHAR' AND occurred_at_tz IS NOT NULL",
        "an ISO-8601 timestamp such as 2026-01-05T10:00:00Z",
    ),
    _typed("session_id", "t_session_id = 'VARCHAR'", "a string or null"),
    _typed("properties", "t_properties = 'OBJECT'", "a JSON object or null"),
]

# Each fragment, its JSON type and its text are computed once, in their own projection: the
# checks and the values below refer to them by name (inlined expressions cost 3x here).


def _json_kind(fragment: str) -> str:
    """The JSON type of an extracted fragment, read from its first character.

    A fragment comes out of json_extract minified, so its first character tells its kind;
    json_type() would parse it again (measured: ~0.1 s per 1M lines for six fields). Numbers
    are told apart (integer or not) only where a check needs it, with json_type().
    """
    return (
        f"CASE WHEN {fragment} IS NOT NULL THEN CASE left({fragment}::VARCHAR, 1) "
        "WHEN '\"' THEN 'VARCHAR' WHEN '{' THEN 'OBJECT' WHEN '[' THEN 'ARRAY' "
        "WHEN 'n' THEN 'NULL' WHEN 't' THEN 'BOOLEAN' WHEN 'f' THEN 'BOOLEAN' "
        "ELSE 'NUMBER' END END"
    )


def _fragment_columns(index: int, field: str) -> str:
    kind = f"json_type(v[{index}])" if field == "user_id" else _json_kind(f"v[{index}]")
    return f"v[{index}] AS j_{field}, {kind} AS t_{field}, v[{index}]->>'$' AS s_{field}"


_EVENT_FRAGMENTS = ",\n        ".join(
    _fragment_columns(i, f) for i, f in enumerate(_EVENT_FIELDS, start=1)
)

EVENTS_SQL = f"""
WITH objects AS (
    SELECT file_index, line_number, line,
        json_valid(line) AS is_json,
        is_json AND starts_with(ltrim(line), '{{') AS is_object
    FROM _file_lines
),
fields AS (
    SELECT *,
        CASE WHEN is_object THEN json_extract(line, {_EVENT_PATHS}) END AS v,
        CASE WHEN is_object
            THEN list_filter(json_keys(line), lambda k: k NOT IN ({_sql_list(_EVENT_FIELDS)}))
        END AS extra_keys
    FROM objects
),
fragments AS (
    SELECT file_index, line_number, line, is_json, is_object, extra_keys,
        {_EVENT_FRAGMENTS}
    FROM fields
),
typed AS (
    SELECT *, TRY_CAST(s_occurred_at AS TIMESTAMPTZ) AS occurred_at_tz FROM fragments
)
SELECT
    file_index,
    line_number,
    line,
    CASE
        WHEN NOT is_json THEN 'not valid JSON: the line is truncated or malformed; '
            || 'fix the emitter so each line is one complete JSON object'
        WHEN NOT is_object THEN 'not a JSON object (got ' || json_type(line)
            || '): each line must be one JSON object'
        ELSE {_problems(_EVENT_CHECKS)}
    END AS error,
    is_object AND {_passes(_EVENT_CHECKS)} AS is_valid,
    s_event_id AS event_id,
    TRY_CAST(s_user_id AS BIGINT) AS user_id,
    s_event_type AS event_type,
    occurred_at_tz AT TIME ZONE 'UTC' AS occurred_at,
    s_session_id AS session_id,
    CASE WHEN t_properties = 'OBJECT' THEN j_properties END AS properties,
    CASE WHEN len(extra_keys) > 0 THEN json_merge_patch(line, '{_EVENT_NULLS}') END AS _rescued
FROM typed
"""

_PAYMENT_FIELDS = ["payment_id", "order_id", "amount", "currency", "status", "created_at"]
# One CSV field: quoted (with "" escapes) or bare; the leading (^|,) makes empty fields match.
_CSV_FIELD = r"""(?:^|,)("(?:[^"]|"")*"|[^,]*)"""


def _csv_cell(name: str) -> str:
    return f"NULLIF(trim(cells[list_position(header, '{name}')]), '')"


_PAYMENT_CHECKS = [
    *[
        (f"list_position(header, '{n}') IS NULL", f"'{n}: column missing from the file header'")
        for n in _PAYMENT_FIELDS
    ],
    *[
        (
            f"list_position(header, '{n}') IS NOT NULL AND {_csv_cell(n)} IS NULL",
            f"'{n}: required, empty'",
        )
        for n in _PAYMENT_FIELDS
    ],
    (
        f"{_csv_cell('order_id')} IS NOT NULL AND TRY_CAST({_csv_cell('order_id')} AS BIGINT) IS NULL",
        f"'order_id: expected an integer, got ' || {_quoted(_csv_cell('order_id'))}",
    ),
    (
        f"{_csv_cell('amount')} IS NOT NULL "
        f"AND TRY_CAST({_csv_cell('amount')} AS DECIMAL(18,4)) IS NULL",
        f"'amount: expected a decimal number such as 12.50, got ' || {_quoted(_csv_cell('amount'))}",
    ),
    (
        f"{_csv_cell('created_at')} IS NOT NULL "
        f"AND TRY_CAST({_csv_cell('created_at')} AS TIMESTAMPTZ) IS NULL",
        "'created_at: expected an ISO-8601 timestamp such as 2026-01-05T10:00:00Z, got ' || "
        + _quoted(_csv_cell("created_at")),
    ),
]

PAYMENTS_SQL = f"""
WITH header AS (
    SELECT file_index, list_transform(
        regexp_extract_all(line, '{_CSV_FIELD}', 1),
        lambda h: lower(trim(replace(trim(h, '"'), '""', '"')))
    ) AS header
    FROM _file_header
),
split AS (
    SELECT file_index, line_number, line, header,
        list_transform(
            regexp_extract_all(line, '{_CSV_FIELD}', 1),
            lambda c: CASE WHEN starts_with(c, '"') THEN replace(c[2:-2], '""', '"') ELSE c END
        ) AS cells
    FROM _file_lines JOIN header USING (file_index)
),
extras AS (
    SELECT *,
        list_filter(range(1, len(header) + 1), lambda i: header[i] NOT IN ({_sql_list(_PAYMENT_FIELDS)}))
            AS extra_positions
    FROM split
)
SELECT
    file_index,
    line_number,
    line,
    CASE
        WHEN len(cells) <> len(header) THEN 'row has ' || len(cells) || ' fields but the header '
            || 'names ' || len(header) || ': fix the quoting or the delimiter of this row'
        ELSE {_problems(_PAYMENT_CHECKS)}
    END AS error,
    len(cells) = len(header) AND {_passes(_PAYMENT_CHECKS)} AS is_valid,
    {_csv_cell("payment_id")} AS payment_id,
    TRY_CAST({_csv_cell("order_id")} AS BIGINT) AS order_id,
    TRY_CAST({_csv_cell("amount")} AS DECIMAL(18,4)) AS amount,
    {_csv_cell("currency")} AS currency,
    {_csv_cell("status")} AS status,
    TRY_CAST({_csv_cell("created_at")} AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS created_at,
    CASE WHEN len(extra_positions) > 0 THEN to_json(map_from_entries(
        list_transform(extra_positions, lambda i: {{'k': header[i], 'v': cells[i]}})
    )) END AS _rescued
FROM extras
"""

EVENT_FILES = FileFormat("events", EVENTS, (".jsonl", ".jsonl.gz"), 0, EVENTS_SQL)
PAYMENT_FILES = FileFormat("payments", PAYMENTS, (".csv", ".csv.gz"), 1, PAYMENTS_SQL)
