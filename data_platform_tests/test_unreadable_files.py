"""A landing file that cannot be read at all never blocks its day (issue 9, item 1b).

Each case lands a day of good files plus one file that cannot be read (gzip cut short, not
gzip at all, deleted or gone from S3 after the listing, access denied) and checks, against
figures computed here from the lines written: the good files' records loaded or dead-lettered
line by line, the bad file as one whole-file dead letter with its reason, the ingestion's
conservation figures counting it as one record, and the conservation, dead-letter-ratio and
Pandera dead-letter checks agreeing.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

import boto3
import dagster as dg
import pytest

from data_platform.assets.raw import DEAD_LETTER_SPEC, RAW_FILE_ASSETS
from data_platform.automation.landing_sensor import landing_zone_sensor
from data_platform.checks.conservation import conservation_check
from data_platform.checks.dead_letter import dead_letter_checks
from data_platform.checks.gates import GATES
from data_platform.checks.pandera_gate import pandera_check
from data_platform.checks.thresholds import QualityThresholds
from data_platform.ingestion import files as file_ingestion
from data_platform.ingestion.file_formats import EVENT_FILES, PAYMENT_FILES
from data_platform.ingestion.file_lines import HEAD_BYTES
from data_platform.resources.landing import LandingZone
from data_platform_tests.helpers import classify_landing_file, put_lines, query
from data_platform_tests.test_sensors import requested, tick

DAY = date(2026, 1, 5)
T = QualityThresholds()
CHECKS = [
    *(conservation_check(fmt) for fmt in (EVENT_FILES, PAYMENT_FILES)),
    *(dead_letter_checks(fmt, T) for fmt in (EVENT_FILES, PAYMENT_FILES)),
    *(pandera_check(gate, T) for gate in GATES if gate.name == "pandera_dead_letter"),
]
ASSETS = [*RAW_FILE_ASSETS, DEAD_LETTER_SPEC, *CHECKS]
# Set in the child pytest that re-runs the permission case without root's power to read all.
NO_DAC_CHILD = "DATA_PLATFORM_TEST_NO_DAC_OVERRIDE"


def event_lines(prefix: str, n: int) -> list[str]:
    return [
        json.dumps(
            {
                "event_id": f"{prefix}-{i}",
                "user_id": i,
                "event_type": "page_view",
                "occurred_at": "2026-01-05T10:00:00Z",
            }
        )
        for i in range(n)
    ]


GOOD_EVENTS = {
    f"events/dt={DAY}/a.jsonl": [*event_lines("a", 5), "", "{oops"],
    f"events/dt={DAY}/b.jsonl.gz": event_lines("b", 4),
}
GOOD_PAYMENTS = {
    f"payments/dt={DAY}/export.csv": [
        "payment_id,order_id,amount,currency,status,created_at",
        "p1,1,12.50,EUR,succeeded,2026-01-05T10:00:00Z",
        "p2,2,3.00,EUR,refunded,2026-01-05T11:00:00Z",
        "",
        "p3,x,1.00,EUR,failed,2026-01-05T12:00:00Z",
    ],
}


def land(landing: LandingZone, files: dict[str, list[str]], tmp_path: Path) -> dict:
    """Put the files in the landing zone; return (key, line) -> meets the contract, as judged
    by the tests' own reading of each file's plain text."""
    verdicts = {}
    for key, lines in files.items():
        put_lines(landing, key, lines, tmp_path)
        plain = tmp_path / "expected" / key.removesuffix(".gz")
        plain.parent.mkdir(parents=True, exist_ok=True)
        plain.write_text("".join(f"{line}\n" for line in lines))
        verdicts |= classify_landing_file(plain, key)
    return verdicts


def truncated_gzip(lines: list[str]) -> bytes:
    whole = gzip.compress("".join(f"{line}\n" for line in lines).encode())
    return whole[: len(whole) // 2]


def delete_key(landing: LandingZone, key: str) -> None:
    if not landing.is_s3:
        (Path(landing.url) / key).unlink()
        return
    url = urlparse(landing.url)
    boto3.client("s3").delete_object(Bucket=url.netloc, Key=f"{url.path.strip('/')}/{key}")


def delete_after_listing(monkeypatch, landing: LandingZone, key: str) -> None:
    """Make `key` vanish right after ingestion lists the day's files, before it reads them."""
    listed = file_ingestion.files_for

    def list_then_delete(*args, **kwargs):
        files = listed(*args, **kwargs)
        if key in {f.key for f in files}:
            delete_key(landing, key)
        return files

    monkeypatch.setattr(file_ingestion, "files_for", list_then_delete)


def materialize_day(resources: dict, **kwargs) -> dg.ExecuteInProcessResult:
    result = dg.materialize(ASSETS, resources=resources, partition_key=DAY.isoformat(), **kwargs)
    assert result.success
    return result


def check(result: dg.ExecuteInProcessResult, source: str, name: str) -> dg.AssetCheckEvaluation:
    [found] = [
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_key == dg.AssetKey(["raw", source]) and e.check_name == name
    ]
    return found


def assert_day_accounted(
    result: dg.ExecuteInProcessResult,
    warehouse: Path,
    source: str,
    verdicts: dict[tuple[str, int], bool],
    bad_key: str,
    reason: str,
) -> None:
    """Good records loaded, bad lines dead-lettered by line, the bad file once, and every
    count and check agreeing that the bad file is one record."""
    table = "events" if source == "events" else "payments"
    loaded = set(query(warehouse, f"SELECT _source_file, _line_number FROM raw.{table}"))
    assert loaded == {k for k, ok in verdicts.items() if ok}
    by_line = set(
        query(
            warehouse,
            "SELECT source_file, line_number FROM raw.dead_letter "
            "WHERE source = ? AND line_number IS NOT NULL",
            [source],
        )
    )
    assert by_line == {k for k, ok in verdicts.items() if not ok}
    [(key, raw_record, error)] = query(
        warehouse,
        "SELECT source_file, raw_record, error FROM raw.dead_letter "
        "WHERE source = ? AND line_number IS NULL",
        [source],
    )
    assert (key, raw_record) == (bad_key, None)
    assert reason in error, error

    records = len(verdicts) + 1  # the unreadable file counts as one record
    [meta] = [
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["raw", source])
    ]
    assert meta["records_read"].value == records
    assert meta["rows_loaded"].value == len(loaded)
    assert meta["rows_dead_lettered"].value == len(by_line) + 1

    conservation = check(result, source, "conservation")
    assert conservation.passed, conservation.metadata
    assert conservation.metadata["records_in_files"].value == records
    assert conservation.metadata["rows_dead_lettered"].value == len(by_line) + 1

    # A person must land the file again: a warning, which holds nothing back.
    assert check(result, source, "dead_letter_ratio").passed
    ratio = check(result, source, "dead_letter_warning")
    assert (ratio.passed, ratio.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert ratio.metadata["files_unreadable"].value == 1
    assert bad_key in ratio.metadata["unreadable_files"].value
    assert ratio.metadata["records"].value == records

    pandera = check(result, source, "pandera_dead_letter")
    assert pandera.passed, pandera.metadata
    assert pandera.metadata["rows_validated"].value == len(by_line) + 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (truncated_gzip(event_lines("c", 2000)), "truncated or corrupt gzip stream"),
        ("\n".join(event_lines("c", 3)).encode(), "not a valid gzip file"),
    ],
    ids=["truncated", "not-gzip"],
)
def test_a_damaged_gzip_file_is_one_dead_letter_and_the_day_loads(
    settings, resources, tmp_path, data, reason
):
    verdicts = land(resources["landing"], GOOD_EVENTS, tmp_path)
    bad_key = f"events/dt={DAY}/c.jsonl.gz"
    resources["landing"].write_bytes(bad_key, data)
    result = materialize_day(resources)
    assert_day_accounted(result, settings.warehouse, "events", verdicts, bad_key, reason)


def test_a_truncated_payments_export_is_one_dead_letter(settings, resources, tmp_path):
    verdicts = land(resources["landing"], GOOD_PAYMENTS, tmp_path)
    bad_key = f"payments/dt={DAY}/late.csv.gz"
    header = GOOD_PAYMENTS[f"payments/dt={DAY}/export.csv"][0]
    rows = [f"q{i},{i},1.00,EUR,succeeded,2026-01-05T10:00:00Z" for i in range(3000)]
    resources["landing"].write_bytes(bad_key, truncated_gzip([header, *rows]))
    result = materialize_day(resources)
    assert_day_accounted(
        result, settings.warehouse, "payments", verdicts, bad_key, "truncated or corrupt gzip"
    )


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_file_gone_between_listing_and_reading(
    settings, resources, tmp_path, monkeypatch, request, backend
):
    landing = resources["landing"] if backend == "local" else request.getfixturevalue("s3_landing")
    resources = {**resources, "landing": landing}
    verdicts = land(landing, GOOD_EVENTS, tmp_path)
    bad_key = f"events/dt={DAY}/c.jsonl"
    put_lines(landing, bad_key, event_lines("c", 3), tmp_path)
    delete_after_listing(monkeypatch, landing, bad_key)
    result = materialize_day(resources)
    assert_day_accounted(
        result, settings.warehouse, "events", verdicts, bad_key, "disappeared between listing"
    )


def permissions_enforced(tmp_path: Path) -> bool:
    """False for root with CAP_DAC_OVERRIDE, which reads a file whatever its mode."""
    probe = tmp_path / "probe"
    probe.write_text("x")
    probe.chmod(0)
    try:
        probe.read_text()
    except PermissionError:
        return True
    return False


def ran_without_reading_all(test, tmp_path: Path) -> bool:
    """When root reads whatever a mode says (CAP_DAC_OVERRIDE), run `test` again in a child
    without that capability and return True: the caller is done. False when permissions hold
    here already."""
    if permissions_enforced(tmp_path):
        return False
    assert not os.environ.get(NO_DAC_CHILD), "setpriv did not drop CAP_DAC_OVERRIDE"
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, which reads any file, and no setpriv to drop that")
    without_dac = [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]
    # Its own basetemp: a second session must not prune the numbered temp folders in use.
    options = ["-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'child'}"]
    child = subprocess.run(
        [*without_dac, sys.executable, "-m", "pytest", f"{__file__}::{test.__name__}", *options],
        env={**os.environ, NO_DAC_CHILD: "1"},
        capture_output=True,
        text=True,
    )
    assert child.returncode == 0 and "1 passed" in child.stdout, child.stdout + child.stderr
    return True


def test_a_file_the_platform_may_not_read(settings, resources, tmp_path):
    if ran_without_reading_all(test_a_file_the_platform_may_not_read, tmp_path):
        return
    verdicts = land(resources["landing"], GOOD_EVENTS, tmp_path)
    bad_key = f"events/dt={DAY}/c.jsonl"
    put_lines(resources["landing"], bad_key, event_lines("c", 3), tmp_path)
    (Path(resources["landing"].url) / bad_key).chmod(0)
    result = materialize_day(resources)
    assert_day_accounted(result, settings.warehouse, "events", verdicts, bad_key, "permission")


def test_a_folder_in_a_day_the_platform_may_not_list_is_one_dead_letter(
    settings, resources, tmp_path
):
    """os.scandir's PermissionError failed the day (no file of it loaded) and every tick of
    the landing sensor, for every day."""
    if ran_without_reading_all(
        test_a_folder_in_a_day_the_platform_may_not_list_is_one_dead_letter, tmp_path
    ):
        return
    landing = resources["landing"]
    verdicts = land(landing, GOOD_EVENTS, tmp_path)
    locked = Path(landing.url) / f"events/dt={DAY}/locked"
    locked.mkdir()
    (locked / "c.jsonl").write_text("\n".join(event_lines("c", 3)))
    locked.chmod(0)
    try:
        assert tick(landing_zone_sensor, None, landing=landing).run_requests
        result = materialize_day(resources)
    finally:
        locked.chmod(0o755)
    bad_key = f"events/dt={DAY}/locked/"
    reason = "a folder that could not be read (Permission denied): give the platform read access"
    assert_day_accounted(result, settings.warehouse, "events", verdicts, bad_key, reason)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        (
            "gone.jsonl",
            "a symbolic link to 'gone.jsonl' that could not be read (its target does not exist)",
        ),
        ("c.jsonl", "a symbolic link to 'c.jsonl' that could not be read (Too many levels of"),
    ],
    ids=["dangling", "to-itself"],
)
def test_a_symbolic_link_that_names_no_file_is_one_dead_letter(
    settings, resources, tmp_path, target, reason
):
    """A link whose target is gone was skipped unseen (its file in no table and no check); a
    link to itself (ELOOP) failed the day and every landing sensor tick."""
    landing = resources["landing"]
    verdicts = land(landing, GOOD_EVENTS, tmp_path)
    bad_key = f"events/dt={DAY}/c.jsonl"
    (Path(landing.url) / bad_key).symlink_to(target)
    assert requested(tick(landing_zone_sensor, None, landing=landing)) == [
        ("events", str(DAY), str(DAY))
    ]
    result = materialize_day(resources)
    assert_day_accounted(result, settings.warehouse, "events", verdicts, bad_key, reason)


@pytest.mark.parametrize("linked", ["file", "folder"])
def test_a_symbolic_link_out_of_the_landing_zone_is_one_dead_letter_and_not_read(
    settings, resources, tmp_path, linked
):
    """A link to any file the platform may read was followed: its lines landed in raw (a link
    to the PII salt put the salt in a dead letter that `data-platform sql` shows), for whoever
    may only write to the landing zone. Its target's lines are read by no run now."""
    landing = resources["landing"]
    verdicts = land(landing, GOOD_EVENTS, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "c.jsonl").write_text("\n".join(event_lines("secret", 3)) + "\n")
    name = "c.jsonl" if linked == "file" else "sub"
    (Path(landing.url) / f"events/dt={DAY}/{name}").symlink_to(
        outside / "c.jsonl" if linked == "file" else outside
    )
    bad_key = f"events/dt={DAY}/{name}" + ("/" if linked == "folder" else "")
    result = materialize_day(resources)
    reason = "a symbolic link to '{}' that could not be read (it leads out of the landing zone)"
    target = outside / "c.jsonl" if linked == "file" else outside
    assert_day_accounted(
        result, settings.warehouse, "events", verdicts, bad_key, reason.format(target)
    )
    assert query(
        settings.warehouse, "SELECT count(*) FROM raw.events WHERE event_id LIKE 'secret%'"
    ) == [(0,)]


def test_a_fixed_file_landed_again_replaces_its_dead_letter(settings, resources, tmp_path):
    landing = resources["landing"]
    verdicts = land(landing, GOOD_EVENTS, tmp_path)
    bad_key = f"events/dt={DAY}/c.jsonl.gz"
    fixed = event_lines("c", 2000)
    landing.write_bytes(bad_key, truncated_gzip(fixed))
    first = tick(landing_zone_sensor, None, landing=landing)
    assert requested(first) == [("events", str(DAY), str(DAY))]
    materialize_day(resources)
    # The cut-short file is one dead letter of its own, and none of its lines loaded.
    assert query(
        settings.warehouse, "SELECT source_file FROM raw.dead_letter WHERE line_number IS NULL"
    ) == [(bad_key,)]
    assert query(
        settings.warehouse, "SELECT count(*) FROM raw.events WHERE _source_file = ?", [bad_key]
    ) == [(0,)]
    assert tick(landing_zone_sensor, first.cursor, landing=landing).run_requests == []

    verdicts |= land(landing, {bad_key: fixed}, tmp_path)  # the complete file, same key
    again = tick(landing_zone_sensor, first.cursor, landing=landing)
    assert requested(again) == [("events", str(DAY), str(DAY))]
    assert again.run_requests[0].run_key != first.run_requests[0].run_key
    result = materialize_day(resources)

    assert query(
        settings.warehouse, "SELECT count(*) FROM raw.dead_letter WHERE line_number IS NULL"
    ) == [(0,)]
    loaded = set(query(settings.warehouse, "SELECT _source_file, _line_number FROM raw.events"))
    assert loaded == {k for k, ok in verdicts.items() if ok}
    assert sum(1 for key, _ in loaded if key == bad_key) == len(fixed)
    conservation = check(result, "events", "conservation")
    assert conservation.passed
    assert conservation.metadata["records_in_files"].value == len(verdicts)
    assert check(result, "events", "dead_letter_ratio").metadata["files_unreadable"].value == 0


def lines_text(lines: list[str]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode()


def crc_broken(plain: bytes) -> bytes:
    """`plain` gzip-compressed, its deflate data intact and its CRC-32 trailer wrong: DuckDB's
    gunzip, which verifies no checksum, reads it all; Python's gzip refuses it."""
    stream = bytearray(gzip.compress(plain))
    stream[-8] ^= 0xFF
    return bytes(stream)


def garbled_inside(plain: bytes) -> bytes:
    stream = bytearray(gzip.compress(plain))
    for i in range(200, 260):
        stream[i] ^= 0x5A
    return bytes(stream)


# Text over HEAD_BYTES: the lone-CR probe, reading a file's head with Python's gzip, does not
# reach the trailer, so that DuckDB's reading decides the path. Its last line, not UTF-8 in
# NOT_UTF8_LINES, makes DuckDB hand the file to Python.
VALID_LINES = lines_text(event_lines("c", 20000))
NOT_UTF8_LINES = VALID_LINES + b'{"event_id": "c-\xff"}\n'
assert len(VALID_LINES) > HEAD_BYTES


@pytest.mark.parametrize(
    ("damaged", "path"),
    [
        # DuckDB meets bytes that are not UTF-8 and hands the file to Python, whose gzip
        # checks the CRC: the file is one dead letter, none of its lines loaded.
        (crc_broken(NOT_UTF8_LINES), "dead-lettered"),
        # DuckDB reads valid text and loads its lines; only the independent check, reading
        # with Python's gzip, finds the file unreadable: the day is unbalanced, an ERROR.
        (crc_broken(VALID_LINES), "unbalanced"),
        # Deflate data garbled in the middle: which of the two DuckDB takes varies with how it
        # splits its reading (whether the garbled bytes it streams hit non-UTF-8 first).
        (garbled_inside(lines_text(event_lines("c", 20000))), "either"),
    ],
    ids=["crc-not-utf8", "crc-valid-text", "garbled-deflate"],
)
def test_gzip_corrupted_inside_its_stream_is_never_accepted_silently(
    settings, resources, tmp_path, damaged, path
):
    """DuckDB's gunzip verifies no checksum, so a corrupt stream may get past it. Either way
    the file is never accepted: read again in Python, whose gzip refuses it, it is
    dead-lettered whole; or its lines load and the independent check (Python's gzip) reports
    the file unbalanced. The first two cases pin each path; the third is a real corruption
    whose path is DuckDB's to choose, held to what both paths guarantee."""
    land(resources["landing"], GOOD_EVENTS, tmp_path)
    bad_key = f"events/dt={DAY}/c.jsonl.gz"
    resources["landing"].write_bytes(bad_key, damaged)
    result = dg.materialize(
        ASSETS, resources=resources, partition_key=DAY.isoformat(), raise_on_error=False
    )
    conservation = check(result, "events", "conservation")
    assert conservation.metadata["files_unreadable"].value == [bad_key]
    dead = query(
        settings.warehouse,
        "SELECT line_number, error FROM raw.dead_letter WHERE source_file = ?",
        [bad_key],
    )
    rows = query(
        settings.warehouse, "SELECT count(*) FROM raw.events WHERE _source_file = ?", [bad_key]
    )
    dead_lettered = len(dead) == 1 and dead[0][0] is None and rows == [(0,)]
    unbalanced = (
        not conservation.passed
        and conservation.severity == dg.AssetCheckSeverity.ERROR
        and conservation.metadata["files_unbalanced"].value == 1
    )
    # Never silently accepted: the file is dead-lettered whole, or the day fails its check.
    assert dead_lettered != unbalanced, (dead, rows, conservation)
    if path == "dead-lettered":
        assert dead_lettered and conservation.passed
        assert "corrupt gzip stream (CRC check failed" in dead[0][1], dead[0][1]
    elif path == "unbalanced":
        assert unbalanced and dead == [] and rows == [(20000,)]
    elif dead_lettered:
        assert conservation.passed and "corrupt gzip" in dead[0][1], dead[0][1]


def test_a_file_the_day_folder_holds_but_ingestion_does_not_read_is_a_dead_letter(
    settings, resources, tmp_path
):
    """A wrong extension, an upper-case one, a subfolder: each was ignored by ingestion, the
    sensor and the checks alike, as if it had never landed; a name not UTF-8 failed them all.
    Each is now one whole-file dead letter saying what to do; the sensor asks for its day; the
    checks count it as a record."""
    landing = resources["landing"]
    verdicts = land(landing, GOOD_EVENTS, tmp_path)
    first = tick(landing_zone_sensor, None, landing=landing)
    misnamed = {
        f"events/dt={DAY}/c.json": "does not end in *.jsonl or *.jsonl.gz",
        f"events/dt={DAY}/d.JSONL": "does not end in *.jsonl or *.jsonl.gz",
        f"events/dt={DAY}/late/e.jsonl": f"move it into events/dt={DAY}/",
    }
    for key in misnamed:
        put_lines(landing, key, event_lines(key[-7:], 3), tmp_path)
    # A local name that is not UTF-8: its key spells the byte as \xe9.
    day_folder = os.fsencode(Path(landing.url) / f"events/dt={DAY}")
    with open(os.path.join(day_folder, b"caf\xe9.jsonl"), "w") as latin1_named:
        latin1_named.write("\n".join(event_lines("f", 3)))
    misnamed[f"events/dt={DAY}/caf\\xe9.jsonl"] = "name is not UTF-8 text"
    again = tick(landing_zone_sensor, first.cursor, landing=landing)
    assert requested(again) == [("events", str(DAY), str(DAY))]

    result = materialize_day(resources)
    loaded = set(query(settings.warehouse, "SELECT _source_file, _line_number FROM raw.events"))
    assert loaded == {k for k, ok in verdicts.items() if ok}
    whole = dict(
        query(
            settings.warehouse,
            "SELECT source_file, error FROM raw.dead_letter WHERE line_number IS NULL",
        )
    )
    assert whole.keys() == misnamed.keys()
    for key, reason in misnamed.items():
        assert reason in whole[key] and "re-run the day" in whole[key], whole[key]
    [meta] = [e.materialization.metadata for e in result.get_asset_materialization_events()
              if e.asset_key == dg.AssetKey(["raw", "events"])]  # fmt: skip
    assert meta["records_read"].value == len(verdicts) + len(misnamed)
    conservation = check(result, "events", "conservation")
    assert conservation.passed, conservation.metadata
    assert conservation.metadata["records_in_files"].value == len(verdicts) + len(misnamed)
    ratio = check(result, "events", "dead_letter_ratio")
    assert ratio.metadata["files_unreadable"].value == len(misnamed)


# A process holding a scratch folder, as a run does mid-ingestion: it prints the folder's path.
SCRATCH_HOLDER = """
import time
from data_platform.scratch import scratch_folder
with scratch_folder("landing") as folder:
    (folder / "landed").write_bytes(bytes(1 << 20))
    print(folder, flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_killed_runs_scratch_is_removed_by_the_next_ingestion(
    settings, resources, tmp_path, monkeypatch, request, backend
):
    """A run killed (-9) mid-ingestion left its scratch in $TMPDIR, which nothing removed: an
    S3 file's download or a Python copy of a file DuckDB cannot read (each a whole landing
    file), the lines parked. The next ingestion removes the folders of processes that are
    gone, and its own when done; a live process's stays."""
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_root))
    env = {**os.environ, "TMPDIR": str(scratch_root)}
    killed = subprocess.Popen(
        [sys.executable, "-c", SCRATCH_HOLDER], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        abandoned = Path(killed.stdout.readline().strip())
    finally:
        killed.kill()
    assert killed.wait(timeout=30) == -signal.SIGKILL
    assert (abandoned / "landed").stat().st_size == 1 << 20
    live = scratch_root / f"data-platform-{os.getpid()}-landing-held"
    live.mkdir()
    landing = resources["landing"] if backend == "local" else request.getfixturevalue("s3_landing")
    land(landing, GOOD_EVENTS, tmp_path)
    resources = {**resources, "landing": landing}
    assert dg.materialize(RAW_FILE_ASSETS, resources=resources, partition_key=str(DAY)).success
    assert sorted(scratch_root.iterdir()) == [live]
