"""What a simulation wrote: per file, per (source, dt), and the database changes.

`records` counts non-blank lines other than a CSV header, which is exactly the left side of
the contract's conservation rule (README.md, "Quality gates"); `hard_defects` is how many of
them must end in raw.dead_letter, so a test can check ingestion against (records -
hard_defects) raw rows without re-parsing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True)
class FileReport:
    key: str
    source: str  # 'events' or 'payments'
    dt: date
    records: int
    blank_lines: int
    defects: dict[str, int]  # kind -> records (file-level kinds such as extra_column_file: 1)
    hard_defects: int


@dataclass(frozen=True)
class PartitionReport:
    source: str
    dt: date
    files: int
    records: int
    blank_lines: int
    hard_defects: int
    defects: dict[str, int]


@dataclass
class SimulationSummary:
    days: list[date] = field(default_factory=list)  # the days simulated by this call
    files: list[FileReport] = field(default_factory=list)
    db_inserted: Counter[str] = field(default_factory=Counter)  # table -> rows
    db_updated: Counter[str] = field(default_factory=Counter)

    def partitions(self) -> dict[tuple[str, date], PartitionReport]:
        """Totals per (source, dt), sorted; a late file counts towards the dt it landed in, its
        arrival day, as ingestion and the conservation check count it."""
        grouped: dict[tuple[str, date], list[FileReport]] = {}
        for report in self.files:
            grouped.setdefault((report.source, report.dt), []).append(report)
        return {key: _total(key, grouped[key]) for key in sorted(grouped)}

    def records(self, source: str, dt: date | None = None) -> int:
        return sum(f.records for f in self._select(source, dt))

    def hard_defects(self, source: str, dt: date | None = None) -> int:
        return sum(f.hard_defects for f in self._select(source, dt))

    def defects(self, source: str, dt: date | None = None) -> Counter[str]:
        total: Counter[str] = Counter()
        for report in self._select(source, dt):
            total.update(report.defects)
        return total

    def _select(self, source: str, dt: date | None) -> list[FileReport]:
        return [f for f in self.files if f.source == source and (dt is None or f.dt == dt)]

    def describe(self) -> str:
        """A short human-readable report, one line per source plus the database changes."""
        first, last = (min(self.days), max(self.days)) if self.days else (None, None)
        lines = [f"simulated {len(self.days)} day(s): {first} .. {last}"]
        for source in ("events", "payments"):
            chosen = self._select(source, None)
            defects = self.defects(source)
            kinds = ", ".join(f"{k}={n}" for k, n in sorted(defects.items())) or "none"
            lines.append(
                f"{source}: {len(chosen)} files, {self.records(source)} records, "
                f"{self.hard_defects(source)} for dead_letter; defects: {kinds}"
            )
        changes = ", ".join(
            f"{t} +{self.db_inserted[t]}/~{self.db_updated[t]}"
            for t in sorted(set(self.db_inserted) | set(self.db_updated))
        )
        lines.append(f"source database (inserted/updated): {changes or 'no changes'}")
        return "\n".join(lines)


def _total(key: tuple[str, date], reports: list[FileReport]) -> PartitionReport:
    defects: Counter[str] = Counter()
    for report in reports:
        defects.update(report.defects)
    return PartitionReport(
        source=key[0],
        dt=key[1],
        files=len(reports),
        records=sum(r.records for r in reports),
        blank_lines=sum(r.blank_lines for r in reports),
        hard_defects=sum(r.hard_defects for r in reports),
        defects=dict(defects),
    )
