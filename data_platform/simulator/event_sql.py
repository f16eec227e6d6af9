"""DuckDB SQL that spells event columns as JSON lines, including the defective spellings.

Building the text in SQL (string concatenation over whole columns) is what makes a million
events a second possible; the JSON is assembled by hand so that a defect can be exactly one
field missing, null or of the wrong type while the rest of the line stays as it was. The two
hex ids (event_id, session_id) are spelled in numpy beforehand (`line_table`): DuckDB's printf
took half of the rendering, a year of events is 18 million of them.
Mode codes (set in event_records.py):
  line_mode   0 object, 1 truncated, 2 array, 3 number, 4 string, 5 null, 6 empty, 7 whitespace
  eid_mode    0 string, 1 missing, 2 null, 3 number
  uid_mode    0 integer, 1 digit string, 2 missing, 3 null, 4 "abc", 5 float, 6 boolean, 7 object
  type_mode   0 string, 1 missing, 2 null, 3 number
  ts_mode     0 ...Z, 1 +02:00, 2 -05:00, 3 +05:30, 4 no offset, 5 no offset and no millis,
              6 missing, 7 null, 8 "not a date", 9 epoch seconds (a number)
  extra_mode  0 none, 1 app_version, 2 device object, 3 app_version and an experiments array
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from data_platform.simulator.event_records import EVENT_TYPES
from data_platform.simulator.orders import CURRENCIES
from data_platform.simulator.sessions import CHANNELS, PAGES
from data_platform.simulator.sql_text import decimal_text, sql_list

_ISO = "%Y-%m-%dT%H:%M:%S"

EVENT_LINE_SQL = f"""
WITH base AS (
    SELECT *,
        {sql_list(EVENT_TYPES)}[type_code + 1] AS etype,
        make_timestamp(ts_ms * 1000) AS ts,
        {decimal_text("amount_cents")} AS amount,
        {sql_list(CURRENCIES)}[currency + 1] AS cur
    FROM lines
), stamped AS (
    SELECT *,
        CASE ts_mode
            WHEN 0 THEN strftime(ts, '{_ISO}.%gZ')
            WHEN 1 THEN strftime(ts + INTERVAL 2 HOUR, '{_ISO}.%g') || '+02:00'
            WHEN 2 THEN strftime(ts - INTERVAL 5 HOUR, '{_ISO}.%g') || '-05:00'
            WHEN 3 THEN strftime(ts + INTERVAL 330 MINUTE, '{_ISO}.%g') || '+05:30'
            WHEN 4 THEN strftime(ts, '{_ISO}.%g')
            WHEN 5 THEN strftime(ts, '{_ISO}')
            WHEN 8 THEN 'not a date'
        END AS ts_text
    FROM base
), objects AS (
    SELECT line_mode, user_id, etype, '{{' || concat_ws(',',
        CASE eid_mode
            WHEN 0 THEN '"event_id":"' || eid || '"'
            WHEN 2 THEN '"event_id":null'
            WHEN 3 THEN '"event_id":' || (eid_b % 100000)::VARCHAR
        END,
        CASE uid_mode
            WHEN 0 THEN '"user_id":' || user_id::VARCHAR
            WHEN 1 THEN '"user_id":"' || user_id::VARCHAR || '"'
            WHEN 3 THEN '"user_id":null'
            WHEN 4 THEN '"user_id":"abc"'
            WHEN 5 THEN '"user_id":' || user_id::VARCHAR || '.5'
            WHEN 6 THEN '"user_id":true'
            WHEN 7 THEN '"user_id":{{"id":' || user_id::VARCHAR || '}}'
        END,
        CASE type_mode
            WHEN 0 THEN '"event_type":"' || etype || '"'
            WHEN 2 THEN '"event_type":null'
            WHEN 3 THEN '"event_type":' || type_code::VARCHAR
        END,
        CASE
            WHEN ts_text IS NOT NULL THEN '"occurred_at":"' || ts_text || '"'
            WHEN ts_mode = 7 THEN '"occurred_at":null'
            WHEN ts_mode = 9 THEN '"occurred_at":' || (ts_ms // 1000)::VARCHAR
        END,
        CASE WHEN sess_key <> 0 THEN '"session_id":"' || sess || '"' END,
        '"properties":' || CASE props_code
            WHEN 0 THEN '{{"channel":"' || {sql_list(CHANNELS)}[label + 1] || '"}}'
            WHEN 2 THEN '{{"page":"' || {sql_list(PAGES)}[label + 1] || '"}}'
            WHEN 3 THEN '{{"product_id":' || product_id::VARCHAR
                || ',"page":"/product/' || product_id::VARCHAR || '"}}'
            WHEN 4 THEN '{{"product_id":' || product_id::VARCHAR
                || ',"quantity":' || quantity::VARCHAR || '}}'
            WHEN 5 THEN '{{"product_id":' || product_id::VARCHAR || '}}'
            WHEN 6 THEN '{{"amount":' || amount || ',"currency":"' || cur || '"}}'
            WHEN 7 THEN '{{"order_id":' || order_id::VARCHAR || ',"amount":' || amount
                || ',"currency":"' || cur || '"}}'
        END,
        CASE extra_mode
            WHEN 1 THEN '"app_version":"5.' || (eid_b % 7)::VARCHAR || '.0"'
            WHEN 2 THEN '"device":{{"os":"' || ['ios', 'android', 'web'][eid_b % 3 + 1]
                || '","model":"X' || (eid_b % 90 + 10)::VARCHAR || '"}}'
            WHEN 3 THEN '"app_version":"5.2.0","experiments":["new_checkout","dark_mode"]'
        END
    ) || '}}' AS obj
    FROM stamped
)
SELECT CASE line_mode
        WHEN 0 THEN obj
        WHEN 1 THEN left(obj, length(obj) * 2 // 3)
        WHEN 2 THEN '[' || user_id::VARCHAR || ',"' || etype || '"]'
        WHEN 3 THEN user_id::VARCHAR
        WHEN 4 THEN '"' || etype || '"'
        WHEN 5 THEN 'null'
        WHEN 6 THEN ''
        WHEN 7 THEN '   ' || chr(9)
    END || chr(10) AS line
FROM objects
"""

_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded lower-case hex of non-negative integers, as an (n, width) array of bytes."""
    shifts = np.arange(4 * (width - 1), -1, -4, dtype=np.uint64)
    return _HEX_DIGITS[(values.astype(np.uint64)[:, None] >> shifts) & np.uint64(15)]


def _text(n: int, pieces: list[np.ndarray | bytes]) -> pa.Array:
    """n fixed-width strings, each the concatenation of its row of every piece (an (n, k)
    array of bytes, or bytes repeated on every row)."""
    chars = np.concatenate(
        [
            np.broadcast_to(np.frombuffer(p, np.uint8), (n, len(p))) if isinstance(p, bytes) else p
            for p in pieces
        ],
        axis=1,
    )
    offsets = np.arange(n + 1, dtype=np.int64) * chars.shape[1]
    return pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars))
    )


def line_table(per_line: dict[str, np.ndarray]) -> pa.Table:
    """The columns EVENT_LINE_SQL reads: the line columns plus the ids' text, `eid` (a UUID
    version 4 from eid_a and eid_b) and `sess` (sess_key as 16 hex digits)."""
    a, b, u = per_line["eid_a"].astype(np.uint64), per_line["eid_b"].astype(np.uint64), np.uint64
    n = len(a)
    eid = _text(
        n,
        [
            _hex((a >> u(30)) & u(0xFFFFFFFF), 8),
            b"-",
            _hex((a >> u(14)) & u(0xFFFF), 4),
            b"-4",
            _hex(a & u(0xFFF), 3),
            b"-",
            _hex(u(0x8000) | ((b >> u(48)) & u(0x3FFF)), 4),
            b"-",
            _hex(b & u(0xFFFFFFFFFFFF), 12),
        ],
    )
    return pa.table({**per_line, "eid": eid, "sess": _text(n, [_hex(per_line["sess_key"], 16)])})
