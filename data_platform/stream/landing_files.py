"""Publishing a batch's file durably, and finding one a previous owner published but never committed.

Publishing goes through `LandingZone.write_bytes`, the landing zone's one way to publish a file
that readers never see half-written (a dot-named partial renamed into place, which the landing
listing skips; an S3 upload that only exists once complete). A local landing folder then gets
its file and folder fsynced: the offsets are committed next, and a commit must never point past
a file a power cut could still take back.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from data_platform.resources.landing import LandingZone
from data_platform.stream.batch import parse_batch_key


def publish(landing: LandingZone, key: str, data: bytes) -> None:
    landing.write_bytes(key, data)
    if landing.is_s3:
        return  # upload_file returned: the object is complete and durable
    path = Path(landing.url) / key
    _fsync(path, os.O_RDONLY)
    _fsync(path.parent, os.O_RDONLY | os.O_DIRECTORY)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def published_batch(
    landing: LandingZone, day: date, topic_id: str, partition: int, first: int
) -> int | None:
    """The last offset of a file already landed for this partition of this topic incarnation
    from offset `first`, if any.

    Only the first batch after a partition is assigned can meet one: the previous owner landed
    it and stopped (crash, kill -9, lost partition) before its commit. A file of another
    incarnation with the same partition and offsets holds other messages.
    """
    for landed in landing.list_files(f"events/dt={day.isoformat()}/"):
        parsed = parse_batch_key(landed.key.rsplit("/", 1)[-1])
        if parsed is not None and parsed[:3] == (topic_id, partition, first):
            return parsed[3]
    return None
