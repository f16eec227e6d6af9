"""Landing files' lines, numbered as the contract counts them, for a format's SQL.

A file is read where it lies and never staged whole: DuckDB's CSV reader with no delimiter,
quote or escape streams each line (and gunzips `.gz`) at native speed, and `row_number() OVER
()` numbers a file's lines as they stream by. Several files make one statement (a UNION ALL,
`file_index` telling them apart), read as streams too: a day's memory is reading buffers, not
the day (a million events staged at once peaked at 688 MB).

A file DuckDB's reader would misread (not valid UTF-8, a line over its limit, line endings
other than all LF or all CRLF) is read from a copy Python wrote instead, so that each line
still gets its number by the contract and, if bad, a reason instead of failing the partition.
A file that cannot be read at all
(gone, denied, gzip cut short or corrupt) is reported as `UNREADABLE`, for the caller to
dead-letter whole.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import duckdb

from data_platform.scratch import scratch_folder

NOT_UTF8 = "not valid UTF-8 text: re-export the file as UTF-8"
# The longest line that is read as a record, on both engines. DuckDB needs ~20 times a long
# line in memory: a 25 MB line failed its day with an out-of-memory error under the default
# 512MB limit, on every run. A longer line is a dead letter keeping its start.
MAX_RECORD_BYTES = 16 * 1024 * 1024
OVERSIZED_KEPT_CHARS = 65_536
OVERSIZED_LINE = (
    f"the line is over {MAX_RECORD_BYTES:,} bytes, the most a record may be (its dead letter "
    f"keeps its first {OVERSIZED_KEPT_CHARS:,} characters): split the record or move its large "
    "parts out of it, then re-run the day"
)

# What reading a file raises when it cannot be read at all: gone or denied (OSError, which
# gzip.BadGzipFile is too), a gzip stream cut short (EOFError), corrupt deflate data (zlib.error).
UNREADABLE = (OSError, EOFError, zlib.error)

# A record is a line with something on it: blank lines count in the numbering, not as records.
# Blank as Python's bytes.strip() (the conservation check) and Java's \s (Spark) have it: RE2's
# \S would count a vertical tab as content. The Kafka sink rejects a value made only of these,
# which would land as a line no one loads or dead-letters.
BLANK = " \t\n\v\f\r"
# Escaped (\t, \x0b), as RE2 reads them in a class: the characters themselves would break the
# SQL's lines.
NON_BLANK = f"regexp_matches(line, '[^{BLANK.encode('unicode_escape').decode()}]')"


def unreadable_reason(error: BaseException) -> str:
    """Why a file could not be read, for its dead letter: what happened and what to do."""
    # A stream whose check sum or length disagrees with its data is a gzip file, damaged:
    # "re-upload it gzip-compressed, or without .gz" would send a person the wrong way.
    damaged = isinstance(error, gzip.BadGzipFile) and not str(error).startswith("Not a gzipped")
    if isinstance(error, EOFError | zlib.error) or damaged:
        return (
            f"truncated or corrupt gzip stream ({error}; a partial upload?): "
            "re-upload the complete file"
        )
    if isinstance(error, gzip.BadGzipFile):
        return (
            f"not a valid gzip file ({error}): re-upload it gzip-compressed, "
            "or without .gz in its name if it is plain text"
        )
    if isinstance(error, FileNotFoundError):
        return (
            "the file disappeared between listing and reading (deleted or moved): land it "
            "again, or re-run the day if it was removed on purpose"
        )
    if isinstance(error, PermissionError):
        return (
            "permission denied reading the file: give the platform read access, then re-run the day"
        )
    return f"the file could not be read ({error}): fix or replace it, then re-run the day"


def literal_glob(path: str) -> str:
    """A DuckDB glob matching only `path`: DuckDB reads a path holding `*`, `?` or `[` as a
    pattern, so `a[1].jsonl` would read `a1.jsonl` instead, and `b?.jsonl` every `b` file."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def sql_string(text: str) -> str:
    """A SQL string literal (views cannot take parameters)."""
    return "'" + text.replace("'", "''") + "'"


# DuckDB's line reader refuses a line longer than this (its `max_line_size` default), and
# reads buffers of 16 times it.
READER_LINE_LIMIT = 2_000_000

# How much of a file's start `has_lone_cr` looks at.
HEAD_BYTES = 1 << 20

# A CR that does not end a CRLF: text in its line by the contract (lines end at LF or CRLF).
_LONE_CR = re.compile(rb"\r(?!\n)")


@dataclass(frozen=True)
class FileLines:
    """A plain or gzipped UTF-8 file's lines, streamed by DuckDB and never staged.

    Lines end at LF (a CR ending a line is not part of it), as the conservation check and
    Spark count them. DuckDB's reader
    agrees on files that end every line the same way; on any other (LF and CRLF mixed, a lone
    CR) it would number lines its own way, so it runs strict and raises
    `duckdb.InvalidInputException` instead, as it does on a file that is not UTF-8 or has a line
    over `READER_LINE_LIMIT` (and `duckdb.IOException` on one it cannot open or gunzip). The
    caller then reads a `python_copy` of the file: its lines quoted (`quoted`), so that DuckDB
    takes a CR inside one as text; its `undecodable` lines are dead letters whatever they hold,
    as are its `oversized` ones (over MAX_RECORD_BYTES, only their start copied); its
    `longest_line` (bytes) sizes the reader.
    """

    path: Path
    undecodable: tuple[int, ...] = ()
    oversized: tuple[int, ...] = ()
    longest_line: int = 0
    quoted: bool = False

    def begins_with(self, text: str) -> bool:
        """Whether the file's first line begins with `text` (a copy's lines are quoted: never).
        A guess's input: a file that cannot be read says no, and its read tells why."""
        if self.quoted:
            return False
        try:
            with _opened(self.path) as file:
                return file.read(len(text.encode())) == text.encode()
        except UNREADABLE:
            return False

    @property
    def _reader(self) -> str:
        # A longer line is a record like any other (Spark reads it too): the reader is sized
        # for it, a buffer just large enough instead of 16 times the line.
        sized = (
            f", max_line_size = {self.longest_line + 2}, buffer_size = {self.longest_line + 2}"
            if self.longest_line > READER_LINE_LIMIT
            else ""
        )
        # The copy's lines all end in LF: said, since a quoted CR would otherwise be taken for
        # the line ending.
        quoting = (
            "quote = '\"', escape = '\"', new_line = '\\n'"
            if self.quoted
            else "quote = '', escape = ''"
        )
        return (
            f"read_csv({sql_string(literal_glob(str(self.path)))}, columns = {{'line': 'VARCHAR'}}, "
            f"header = false, delim = '\\0', {quoting}, auto_detect = false, "
            f"strict_mode = true{sized})"
        )

    @property
    def numbered_sql(self) -> str:
        """`(line_number, line)`: every line, numbered from 1."""
        return f"SELECT row_number() OVER () AS line_number, line FROM {self._reader}"

    def lines_sql(self) -> str:
        """`(line_number, line)`: every decodable line, blank ones too (of a file without a
        header: see `FileFormat.header_lines`)."""
        rejected = [*self.undecodable, *self.oversized]
        readable = f"NOT list_contains({rejected}, line_number)" if rejected else "true"
        return f"FROM ({self.numbered_sql}) WHERE {readable}"


def _opened(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def has_lone_cr(path: Path) -> bool:
    """Whether the file holds a CR that ends no CRLF in its first HEAD_BYTES, or in its first
    line if that is longer. DuckDB's strict reader takes its line ending from the first line
    ending, so it reads a file whose lines all end in CR (classic Mac) as lines, where the
    contract sees one line; a lone CR after the first LF trips the strict reader instead."""
    with _opened(path) as file:
        carried = b""  # a chunk's last byte: whether a CR there ends a CRLF is the next's business
        while chunk := file.read(HEAD_BYTES):
            window = carried + chunk
            # Not a CR as the window's last byte, whose LF may open the next chunk (and which, as
            # the file's last byte, ends its last line, as DuckDB has it too). Cutting that byte
            # off before the search made the CR of a final CRLF lone: every CRLF file under
            # HEAD_BYTES was read from a Python copy.
            lone = _LONE_CR.search(window)
            if lone and lone.start() < len(window) - 1:
                return True
            if b"\n" in window:
                return False
            carried = window[-1:]
    return False


# A UTF-8 byte order mark, which DuckDB's reader drops from a file's start (Excel's "CSV UTF-8").
_BOM = b"\xef\xbb\xbf"


def header_without_record(path: Path) -> str | None:
    """The header line of a file, its first non-blank line (byte order mark and line ending
    dropped, as every reader has it), when no record follows it; "" when the file has no
    non-blank line; None when a record follows or the file cannot be read (its readers say
    why). Reads past the header only until a record."""
    first = b""
    try:
        with _opened(path) as file:
            for number, line in enumerate(file, start=1):
                line = line.removeprefix(_BOM) if number == 1 else line
                if not line.strip(BLANK.encode()):
                    continue
                if first:
                    return None
                first = line.removesuffix(b"\n").removesuffix(b"\r")
    except UNREADABLE:
        return None
    return first.decode("utf-8", errors="replace")


def _quoted(line: bytes) -> bytes:
    """A CSV field holding exactly `line`; a blank line stays empty (DuckDB reads it as NULL,
    as the plain reader does)."""
    return b'"' + line.replace(b'"', b'""') + b'"' if line else b""


@contextmanager
def python_copy(path: Path) -> Iterator[FileLines]:
    """The lines of a copy of a file DuckDB's reader rejects, split by Python as the contract
    counts them (at LF, a CR ending a line dropped, a byte order mark at the start dropped as
    DuckDB drops it) and quoted: bad UTF-8 bytes replaced by U+FFFD and the numbers of the lines
    that held them kept (their dead letter says so, whatever they hold); a line longer than
    DuckDB's default limit is read whole, up to MAX_RECORD_BYTES (past it only its start is
    copied, its number kept: a dead letter).

    Streamed a line at a time, so memory holds the longest line, not the file. Only lines with
    a replacement character are examined, since a line can hold a genuine U+FFFD. Raises one
    of `UNREADABLE` before any SQL runs when the file cannot be read at all, so the transaction
    stays usable.
    """
    undecodable, oversized, longest = [], [], 0
    with scratch_folder("lines") as folder:
        copy = folder / "lines.csv"
        with _opened(path) as file, copy.open("wb") as out:
            # Binary lines split at LF only; a bad byte never swallows one (0x0A is no
            # continuation byte), so lines stay aligned.
            for number, line in enumerate(file, start=1):
                line = line.removeprefix(_BOM) if number == 1 else line
                line = line.removesuffix(b"\n").removesuffix(b"\r")
                text = line.decode("utf-8", errors="replace")
                if "\ufffd" in text and text.count("\ufffd") != line.count(b"\xef\xbf\xbd"):
                    undecodable.append(number)
                if len(line) > MAX_RECORD_BYTES:
                    oversized.append(number)
                    text = text[:OVERSIZED_KEPT_CHARS]
                quoted = _quoted(text.encode("utf-8"))
                longest = max(longest, len(quoted))
                out.write(quoted + b"\n")
        yield FileLines(copy, tuple(undecodable), tuple(oversized), longest, quoted=True)


def _each_file(files: list[FileLines], sql: Callable[[FileLines], str]) -> str:
    return " UNION ALL ".join(
        f"SELECT {index} AS file_index, * FROM ({sql(lines)})" for index, lines in enumerate(files)
    )


def expose_lines(conn: duckdb.DuckDBPyConnection, files: list[FileLines]) -> None:
    """Temp view `_file_lines(file_index, line_number, line)` over several files without a
    header, streamed: `file_index` is a file's position in `files`; blank lines included (a
    fast path never vouches for those)."""
    union = _each_file(files, FileLines.lines_sql)
    conn.execute(f"CREATE OR REPLACE TEMP VIEW _file_lines AS {union}")


def expose_leftovers(
    conn: duckdb.DuckDBPyConnection,
    files: list[FileLines],
    header_lines: int,
    parked_sql: str | None,
) -> list[int]:
    """The lines left over for the diagnosis: every line of the files, or, after a fast path,
    the lines it parked (`parked_sql`'s `(file_index, line_number, line)`) and those it never
    saw (a Python copy's undecodable and oversized lines, read again from the copy); returns
    how many records each file has among them.

    Creates temp views `_file_header(file_index, line_number, line, utf8)` (with `header_lines`,
    each file's first non-blank line, and whether it was valid UTF-8) and `_file_lines` of the
    records after it, for a format's diagnosing query.

    The lines left over are written once, as rows of a temp table, which DuckDB spills past
    the connection's memory limit: a payments file has no fast path, so every line of it is
    left over. Gathered into one list per file instead (unnested after), a 100 MB file took
    600 MB of peak RSS in this step, limit lifted (296 MB now, 127 MB of it the rows), and a
    400 MB one failed its day out of memory under the default 512MB limit. Each file's header
    is its first line there, found by a pass over the table, not over the file.
    """
    if parked_sql is None:
        numbered = _each_file(files, lambda lines: lines.numbered_sql)
    else:
        unseen = [
            f"SELECT {index} AS file_index, * FROM ({lines.numbered_sql}) "
            f"WHERE list_contains({[*lines.undecodable, *lines.oversized]}, line_number)"
            for index, lines in enumerate(files)
            if lines.undecodable or lines.oversized
        ]
        numbered = " UNION ALL ".join([f"SELECT * {parked_sql}", *unseen])
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _leftover AS SELECT file_index, line_number, line "
        f"FROM ({numbered}) WHERE {NON_BLANK}"
    )
    # Blank lines before the header are ignored, as anywhere: the header is the first line
    # that is not (a file with a header has no fast path, so none of its lines was loaded).
    header_number = "min(line_number)" if header_lines else "0"
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _file_summary AS SELECT file_index, "
        f"{header_number} AS header_number, count(*) - {header_lines} AS records, "
        f"arg_min(line, line_number) FILTER (WHERE {header_lines} > 0) AS header "
        "FROM _leftover GROUP BY file_index"
    )
    # A header's bad bytes are U+FFFD in the Python copy: its names are not what was written.
    undecodable = [list(lines.undecodable) for lines in files]
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _file_header AS "
        "SELECT file_index, header_number AS line_number, header AS line, "
        "NOT list_contains((?::BIGINT[][])[file_index + 1], header_number) AS utf8 "
        "FROM _file_summary WHERE header IS NOT NULL",
        [undecodable],
    )
    records_after_header = (
        "SELECT l.file_index, l.line_number, l.line FROM _leftover l JOIN _file_header h "
        "USING (file_index) WHERE l.line_number > h.line_number"
        if header_lines
        else "FROM _leftover"
    )
    conn.execute(f"CREATE OR REPLACE TEMP VIEW _file_lines AS {records_after_header}")
    records = dict(conn.execute("SELECT file_index, records FROM _file_summary").fetchall())
    return [records.get(index, 0) for index in range(len(files))]
