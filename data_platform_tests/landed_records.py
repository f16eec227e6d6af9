"""An independent reading of the landing files and the source database, for expected check results.

Plain Python (json, csv, datetime, sqlite3) applying DESIGN.md's required rules, sharing no code
with ingestion or the checks, so a test can compare a check's figures with numbers it did not
compute itself.
"""

from __future__ import annotations

import csv
import gzip
import json
import sqlite3
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
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
    if lines and lines[-1] == "":
        lines.pop()
    first = lines.pop(0) if header else None
    return first, [line for line in lines if line.strip()]


def contract_event(line: str) -> dict | None:
    """An event line read by the contract's rules, independently of the platform's SQL: its
    typed fields, or None when a required rule refuses it."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
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
        (isinstance(user, int) and -(2**63) <= user < 2**63)
        or (isinstance(user, str) and user.isdigit() and len(user) <= 18)
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


def _payment(line: str, header: list[str]) -> dict | None:
    fields = next(csv.reader([line]))
    if len(fields) != len(header):
        return None
    record = dict(zip(header, fields, strict=True))
    if any(not record[f].strip() for f in PAYMENT_FIELDS):
        return None
    try:
        return {
            "payment_id": record["payment_id"],
            "order_id": int(record["order_id"]),
            "amount": float(record["amount"]),
            "currency": record["currency"],
            "status": record["status"],
            "created_at": utc(record["created_at"]),
            "extra": sorted(set(header) - set(PAYMENT_FIELDS)),
        }
    except ValueError:
        return None


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
