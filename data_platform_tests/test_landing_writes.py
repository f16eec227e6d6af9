"""How the landing zone publishes and lists files, local and S3 alike: durable before it is
visible (the Kafka sink commits offsets on the strength of it), and hidden names skipped by the
same rule on both back ends."""

from __future__ import annotations

import errno
import os
import tempfile
from datetime import date
from pathlib import Path

import pytest

from data_platform.resources.landing import LandingZone


@pytest.fixture
def disk_calls(monkeypatch) -> list[tuple[str, str]]:
    """Every fsync (of the path its descriptor names) and rename, in order."""
    calls: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def recording_replace(src, dst) -> None:
        calls.append(("replace", str(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    return calls


@pytest.mark.parametrize("how", ["write_bytes", "upload_file"])
def test_a_local_file_is_on_disk_before_its_name_and_new_folders_are_too(how, tmp_path, disk_calls):
    """A power cut once could leave an empty or truncated file under its final name (only the
    rename was ordered, and the stream fsynced after it) or lose a new dt= folder's entry:
    adoption then trusted the file and its events were lost. Now the partial is fsynced before
    the rename, and after it the folder and the parent of every folder just created."""
    root = tmp_path / "landing"
    landing = LandingZone(url=str(root))
    source = tmp_path / "source.jsonl"
    source.write_bytes(b'{"a": 1}\n')

    def write(key: str) -> None:
        if how == "write_bytes":
            landing.write_bytes(key, source.read_bytes())
        else:
            landing.upload_file(source, key)

    write("events/dt=2026-01-05/a.jsonl")
    day = root / "events/dt=2026-01-05"
    target = day / "a.jsonl"
    assert disk_calls[:2] == [("fsync", str(day / ".a.jsonl.partial")), ("replace", str(target))]
    # The new folders' entries: dt= in events/, events/ in the root, the root in tmp_path.
    assert sorted(disk_calls[2:]) == sorted(
        ("fsync", str(folder)) for folder in (day, day.parent, root, tmp_path)
    )
    assert target.read_bytes() == b'{"a": 1}\n'

    disk_calls.clear()
    write("events/dt=2026-01-05/b.jsonl")
    assert disk_calls == [
        ("fsync", str(day / ".b.jsonl.partial")),
        ("replace", str(day / "b.jsonl")),
        ("fsync", str(day)),
    ]


def test_a_local_write_that_fails_leaves_no_partial(tmp_path, monkeypatch):
    """A full disk mid-write left the hidden partial for good: no listing shows it, and the
    Kafka sink's next try may cut the range at other bounds, under another name."""
    landing = LandingZone(url=str(tmp_path))
    day = tmp_path / "events/dt=2026-01-05"

    def disk_full(path: Path, data: bytes) -> int:
        with open(path, "wb") as partial:
            partial.write(data[:2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OSError) as raised:
        landing.write_bytes("events/dt=2026-01-05/a.jsonl", b'{"a": 1}\n')
    assert raised.value.errno == errno.ENOSPC
    assert list(day.iterdir()) == []


def test_an_s3_write_puts_no_temporary_file_in_tmpdir(s3_landing, tmp_path, monkeypatch):
    """The sink's upload went through a temporary copy in TMPDIR (up to a batch's 64 MiB) that a
    sink killed mid-upload (kill -9) left there for good. The bytes are uploaded from memory:
    TMPDIR stays empty while the parts go up, in a multipart upload (over 8 MiB) too."""
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    seen: list[list[str]] = []

    def while_uploading(**_: object) -> None:
        seen.append(os.listdir(scratch))

    events = s3_landing._s3().meta.events
    events.register("after-call.s3.UploadPart", while_uploading)
    events.register("after-call.s3.PutObject", while_uploading)
    data = b'{"a": 1}\n' * 1_000_000  # 9 MB: two parts
    for key, body in (("events/dt=2026-01-05/big.jsonl", data), ("events/dt=2026-01-05/a", b"{}")):
        s3_landing.write_bytes(key, body)
        with s3_landing.local_path(key) as landed:
            assert landed.read_bytes() == body
    assert len(seen) == 3 and not any(seen)


@pytest.mark.parametrize("zone", ["local", "s3"])
def test_hidden_names_are_skipped_by_the_same_rule_locally_and_on_s3(zone, tmp_path, request):
    """A name whose last part starts with '.' (.DS_Store, ._a.jsonl from macOS, a partial being
    written) is no landing file. The local walk skipped them, the S3 listing did not: there a
    .DS_Store in a day folder was dead-lettered as a misnamed file."""
    if zone == "s3":
        landing = request.getfixturevalue("s3_landing")
    else:
        landing = LandingZone(url=str(tmp_path / "landing"))
    for key in (
        "events/dt=2026-01-05/a.jsonl",
        "events/dt=2026-01-05/.DS_Store",
        "events/dt=2026-01-05/._a.jsonl",
        "events/dt=2026-01-05/late/b.jsonl",
        "events/.trash/c.jsonl",
    ):
        landing.write_bytes(key, b"{}\n")
    assert [f.key for f in landing.list_files("events/")] == [
        "events/.trash/c.jsonl",  # the rule is the last part's: a file in a hidden folder counts
        "events/dt=2026-01-05/a.jsonl",
        "events/dt=2026-01-05/late/b.jsonl",
    ]
    assert landing.list_entries("events/") == ["events/dt=2026-01-05/"]


def test_an_s3_file_named_as_long_as_s3_allows_is_read(s3_landing):
    """A download kept the key's name, which S3 allows up to 1,024 bytes and a local disk to
    255, less the suffix boto3 adds while it writes: a valid file of a 250-byte name was
    dead-lettered "File name too long", and landing it again changed nothing."""
    for name in ("x" * 244 + ".jsonl", "é" * 120 + ".jsonl.gz"):
        key = f"events/dt=2026-01-05/{name}"
        s3_landing.write_bytes(key, b"{}\n")
        with s3_landing.local_path(key) as landed:
            assert landed.read_bytes() == b"{}\n"
            assert landed.suffix == (".gz" if name.endswith(".gz") else "")


def test_an_s3_key_ending_in_a_slash_that_holds_bytes_is_a_file(s3_landing):
    """Every key ending in `/` was skipped as a folder's marker: one holding records (a tool
    that wrote to the folder's own name) was in no table and no dead letter, unseen. Empty
    markers are still folders."""
    import boto3

    from data_platform.ingestion.file_formats import EVENT_FILES
    from data_platform.ingestion.files import files_for

    bucket, prefix = s3_landing.url.removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3")
    for key, body in (
        ("events/dt=2026-01-05/", b'{"event_id": "a"}\n'),
        ("events/dt=2026-01-05/late/", b'{"event_id": "b"}\n'),
        ("events/dt=2026-01-06/", b""),
    ):
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=body)
    found = files_for(s3_landing, EVENT_FILES, {date(2026, 1, 5), date(2026, 1, 6)})
    assert [f.key for f in found] == ["events/dt=2026-01-05/", "events/dt=2026-01-05/late/"]
    assert all(EVENT_FILES.misnamed(f) for f in found)
