"""An independent reading of the landing files and the source database, for expected check results.

Plain Python (json, csv, datetime, sqlite3) applying the contract's required rules (stated in
data_platform/ingestion/record_rules.py), sharing no code with ingestion or the checks, so a
test can compare a check's figures with numbers it did not compute itself.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import re
import sqlite3
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd

EVENT_FIELDS = {"event_id", "user_id", "event_type", "occurred_at", "session_id", "properties"}
PAYMENT_FIELDS = ("payment_id", "order_id", "amount", "currency", "status", "created_at")
KNOWN_EVENT_TYPES = {
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "checkout_started",
    "purchase",
    "signup",
    "login",
}

# The contract's numbers: a 64-bit integer (a JSON number, a string of ASCII digits, a CSV cell
# with an optional sign), and an amount spelled as a plain decimal that DECIMAL(18,4) holds as
# it is (rounding 12.12345, or -0.00001 to 0, would make it another payment). `[0-9]`, not
# str.isdigit(), which also takes "²" and other digits no engine reads.
BIGINT = range(-(2**63), 2**63)
INTEGER_CELL = re.compile(r"[+-]?[0-9]+")
DIGITS = re.compile(r"[0-9]+")
DECIMAL_CELL = re.compile(r"[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?")
AMOUNT_SCALE = Decimal("0.0001")  # 4 digits after the point
AMOUNT_LIMIT = Decimal(10) ** 14  # 14 before it


def bigint(text: str, spelling: re.Pattern[str] = INTEGER_CELL) -> int | None:
    """`text` as a 64-bit integer when `spelling` matches all of it, else None."""
    if not spelling.fullmatch(text):
        return None
    try:
        value = int(text)
    except ValueError:  # past Python's 4300-digit conversion limit: no 64-bit id
        return None
    return value if value in BIGINT else None


def exact_amount(text: str) -> Decimal | None:
    """`text` as an amount when spelled as a plain decimal that DECIMAL(18,4) holds exactly."""
    if not DECIMAL_CELL.fullmatch(text):
        return None  # Decimal() alone also reads 1_000.50, NaN, Infinity and non-ASCII digits
    value = Decimal(text)
    if abs(value) >= AMOUNT_LIMIT or value != value.quantize(AMOUNT_SCALE):
        return None
    return value


@dataclass(frozen=True)
class Landed:
    """The valid records of a source (one row each, extra fields listed) and records per dt."""

    valid: pd.DataFrame
    records: Counter[date]

    def per_dt(self, mask: pd.Series | None = None) -> Counter[date]:
        rows = self.valid if mask is None else self.valid[mask]
        return Counter(rows["dt"])

    def dead_lettered(self) -> Counter[date]:
        valid = self.per_dt()
        return Counter({dt: n - valid[dt] for dt, n in self.records.items()})


def utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _records(path: Path, header: bool) -> tuple[str | None, list[str]]:
    data = path.read_bytes()
    lines = (gzip.decompress(data) if path.name.endswith(".gz") else data).decode().split("\n")
    # Blank: ASCII white space only, as the contract counts; a header is the first other line.
    lines = [line for line in lines if line.strip(" \t\n\v\f\r")]
    first = lines.pop(0) if header and lines else None
    return first, lines


def _finite(text: str) -> float:
    """A JSON number with a fraction or an exponent, refused (ValueError) beyond a 64-bit float
    (1e400), as the contract refuses it; Python's reader would make it infinity."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is beyond a 64-bit float")
    return value


def _no_constant(name: str) -> float:
    """NaN and Infinity, which Python's reader takes and JSON (and the contract) does not."""
    raise ValueError(f"{name} is not JSON")


def contract_event(line: str) -> dict | None:
    """An event line read by the contract's rules, independently of the platform's SQL: its
    typed fields, or None when a required rule refuses it."""
    try:
        record = json.loads(line, parse_float=_finite, parse_constant=_no_constant)
    except ValueError:  # JSONDecodeError too
        return None
    if not isinstance(record, dict):
        return None
    keys = [key for key, _ in json.loads(line, object_pairs_hook=lambda pairs: pairs)]
    if len(keys) != len(set(keys)):
        return None  # a key given twice: refused, never guessed
    if not all(isinstance(record.get(f), str) for f in ("event_id", "event_type", "occurred_at")):
        return None
    user = record.get("user_id")
    if isinstance(user, bool) or not (
        (isinstance(user, int) and user in BIGINT)
        or (isinstance(user, str) and bigint(user, DIGITS) is not None)
    ):
        return None
    if record.get("session_id") is not None and not isinstance(record["session_id"], str):
        return None
    if record.get("properties") is not None and not isinstance(record["properties"], dict):
        return None
    try:
        occurred = utc(record["occurred_at"])
    except ValueError:
        return None
    return {
        "user_id": int(user),
        "event_type": record["event_type"],
        "occurred_at": occurred,
        "extra": sorted(set(record) - EVENT_FIELDS),
    }


def contract_payment(record: Mapping[str, str | None]) -> dict | None:
    """A payment row (header name -> cell) read by the contract's rules, independently of the
    platform's SQL: its typed fields, or None when a required rule refuses it."""
    cells = {f: (record.get(f) or "").strip() for f in PAYMENT_FIELDS}
    if not all(cells.values()):
        return None
    order_id, amount = bigint(cells["order_id"]), exact_amount(cells["amount"])
    if order_id is None or amount is None:
        return None
    try:
        created = utc(cells["created_at"])
    except ValueError:
        return None
    return {**cells, "order_id": order_id, "amount": float(amount), "created_at": created}


def _payment(line: str, header: list[str]) -> dict | None:
    fields = next(csv.reader([line]))
    if len(fields) != len(header):
        return None
    payment = contract_payment(dict(zip(header, fields, strict=True)))
    if payment is None:
        return None
    return {**payment, "extra": sorted(set(header) - set(PAYMENT_FIELDS))}


def read_landed(landing_root: Path, source: str) -> Landed:
    rows, records = [], Counter()
    for path in sorted((landing_root / source).rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        dt = date.fromisoformat(path.parent.name.removeprefix("dt="))
        header, lines = _records(path, header=source == "payments")
        records[dt] += len(lines)
        columns = next(csv.reader([header])) if header else []
        for line in lines:
            record = contract_event(line) if source == "events" else _payment(line, columns)
            if record is not None:
                rows.append({"dt": dt, **record})
    return Landed(pd.DataFrame(rows), records)


def source_table(db_path: Path, sql: str) -> pd.DataFrame:
    with sqlite3.connect(db_path) as conn:
        return pd.read_sql_query(sql, conn)
