"""Publishing a batch's file durably, finding one a previous owner published but never committed,
and removing the partial of one it never finished.

Publishing goes through `LandingZone.write_bytes`, the landing zone's one way to publish a file
that readers never see half-written (a dot-named partial renamed into place, which the landing
listing skips; an S3 upload that only exists once complete) and that a power cut cannot take
back once it returns (the partial fsynced before the rename, the folder and any new parent
after it): the offsets are committed next, and a commit must never point past a lost file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

from data_platform.resources.landing import LandingZone, s3_access_advice
from data_platform.stream.batch import parse_batch_key


class LandingError(RuntimeError):
    """The landing zone refused a file or a listing: nothing past the last durable file was
    committed, so the sink stops (exit 1) and a restart resumes there."""


@contextmanager
def landing_errors(landing: LandingZone) -> Iterator[None]:
    """Turn what the landing zone raises (OSError: not a folder, disk full, permission; S3:
    botocore and boto3 errors, no credentials or bucket) into one `LandingError` sentence."""
    try:
        yield
    except Exception as error:
        if not isinstance(error, _error_types(landing)):
            raise
        raise LandingError(_describe(landing, error)) from error


def _error_types(landing: LandingZone) -> tuple[type[Exception], ...]:
    if not landing.is_s3:
        return (OSError,)
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return (OSError, BotoCoreError, ClientError, Boto3Error)


def _describe(landing: LandingZone, error: Exception) -> str:
    where = f"landing zone DATA_PLATFORM_LANDING={landing.url}"
    if not landing.is_s3:
        return (
            f"{where}: {error}: it must be a folder this user can write, on a disk with room; "
            "a restart resumes after the last landed file"
        )
    bucket = landing.url.removeprefix("s3://").split("/", 1)[0]
    return (
        f"{where}: {error}: {s3_access_advice(bucket)}; a restart resumes after the last "
        "landed file"
    )


def publish(landing: LandingZone, key: str, data: bytes) -> None:
    """The file, complete, visible and durable (local: fsynced before and after its rename,
    new folders too; S3: the upload completed), or an error and nothing visible."""
    with landing_errors(landing):
        landing.write_bytes(key, data)


def remove_partials(landing: LandingZone, topic_id: str, partitions: set[int]) -> list[str]:
    """Remove the partials of these partitions of this topic incarnation, as the sink takes
    them; the keys of the files they were to become.

    A sink killed mid-write leaves its partial (S3: an incomplete multipart upload, whose parts
    are stored until aborted), and the range batched again may end at another offset: nothing
    would ever write that name again. Another topic's partials may be its sink's writes in
    progress, so only the names this sink's own would have are removed."""

    def abandoned(name: str) -> bool:
        parsed = parse_batch_key(name)
        return parsed is not None and parsed[0] == topic_id and parsed[1] in partitions

    with landing_errors(landing):
        return landing.remove_partials("events/", abandoned)


def landed_ranges(
    landing: LandingZone, day: date, topic_id: str, partition: int
) -> list[tuple[int, int]]:
    """The (first, last) offsets of every file landed in `day`'s folder for this partition of
    this topic incarnation, in order: what a previous owner (or an earlier group) landed,
    committed or not. A file of another incarnation with the same offsets holds other messages.
    """
    with landing_errors(landing):
        files = landing.list_files(f"events/dt={day.isoformat()}/")
    ranges = []
    for landed in files:
        parsed = parse_batch_key(landed.key.rsplit("/", 1)[-1])
        if parsed is not None and parsed[:2] == (topic_id, partition):
            ranges.append(parsed[2:])
    return sorted(ranges)
