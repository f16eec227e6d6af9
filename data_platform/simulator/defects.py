"""Which records get which defect: exact, deterministic, every kind represented.

`round(defect_rate * records)` distinct records of a (source, day) are drawn and the kinds are
dealt to them round-robin from a random starting kind, so each kind gets its fair share, even
small volumes see every kind, and the counts are known exactly for the summary. A record has at
most one defect kind, which keeps the expected dead-letter count a plain sum. Kinds that add a
line (an exact duplicate, a blank line) leave their anchor record clean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLEAN = -1


@dataclass(frozen=True)
class DefectKinds:
    """The defect kinds of one source; `hard` ones break the contract (-> dead letter)."""

    names: tuple[str, ...]
    hard: frozenset[str]

    def code(self, name: str) -> int:
        return self.names.index(name)

    def counts(self, kinds: np.ndarray) -> dict[str, int]:
        found = np.bincount(kinds[kinds != CLEAN], minlength=len(self.names))
        return {name: int(n) for name, n in zip(self.names, found, strict=True) if n}


@dataclass(frozen=True)
class Allocation:
    rows: np.ndarray  # distinct record positions
    kind: np.ndarray  # kind code per chosen row
    variant: np.ndarray  # 0, 1, 2, ... per occurrence, to cycle through a kind's variants

    def per_record(self, n_records: int) -> np.ndarray:
        """The kind code of every record, CLEAN where none."""
        kinds = np.full(n_records, CLEAN, dtype=np.int64)
        kinds[self.rows] = self.kind
        return kinds

    def of(self, kind: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, variants) that got `kind`."""
        mask = self.kind == kind
        return self.rows[mask], self.variant[mask]


def allocate(rng: np.random.Generator, n_records: int, rate: float, n_kinds: int) -> Allocation:
    n = min(n_records, round(rate * n_records))
    rows = rng.choice(n_records, n, replace=False) if n else np.zeros(0, dtype=np.int64)
    order = np.arange(n)
    kind = (order + int(rng.integers(n_kinds))) % n_kinds
    return Allocation(rows=rows.astype(np.int64), kind=kind, variant=order // n_kinds)


@dataclass(frozen=True)
class Lines:
    """The lines of a (source, day) in file order."""

    source: np.ndarray  # the record each line renders
    role: np.ndarray  # RECORD, BLANK or COPY
    position: np.ndarray  # the record after which the line sits (for splitting into files)


RECORD, BLANK, COPY = range(3)


def arrange(
    n_records: int, duplicated: np.ndarray, dup_shift: np.ndarray, blank_after: np.ndarray
) -> Lines:
    """Line order after inserting copies and blank lines.

    A copy lands a few records after its original (a retried upload), a blank line right after
    its anchor record.
    """
    base = np.arange(n_records, dtype=np.int64)
    copy_at = np.minimum(duplicated + dup_shift, n_records - 1)
    keys = np.r_[base * 4, blank_after * 4 + 1, copy_at * 4 + 2]
    source = np.r_[base, blank_after, duplicated]
    role = np.r_[
        np.full(n_records, RECORD), np.full(len(blank_after), BLANK), np.full(len(duplicated), COPY)
    ].astype(np.int8)
    order = np.argsort(keys, kind="stable")
    return Lines(source=source[order], role=role[order], position=keys[order] // 4)


def lay_out(
    rng: np.random.Generator, alloc: Allocation, kinds: DefectKinds, n_records: int, max_shift: int
) -> tuple[Lines, np.ndarray]:
    """Insert the allocated duplicate copies and blank lines: (layout, kind code per line)."""
    duplicate, blank = kinds.code("duplicate"), kinds.code("blank_line")
    copies, _ = alloc.of(duplicate)
    blanks, _ = alloc.of(blank)
    per_record = alloc.per_record(n_records)
    per_record[np.r_[copies, blanks]] = CLEAN  # the anchors stay clean; the inserted lines carry it
    lines = arrange(n_records, copies, rng.integers(1, max_shift, len(copies)), blanks)
    per_line = per_record[lines.source]
    per_line[lines.role == COPY] = duplicate
    per_line[lines.role == BLANK] = blank
    return lines, per_line
