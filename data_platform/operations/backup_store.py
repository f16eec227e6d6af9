"""Where backups live: a local folder or s3://bucket/prefix, behind one small interface.

S3 goes through boto3 with AWS_ENDPOINT_URL honoured, as the landing zone does, so a backup
can sit next to the landing zone on any S3-compatible store.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

CHUNK = 1 << 20


class BackupError(RuntimeError):
    """A backup cannot be taken or restored; the message is one actionable line."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# A backup holds the PII salt (0600 in the home) and raw personal data: only its owner reads it,
# wherever it is copied (copyfile made every file 0644, the salt included, and so did a restore).
PRIVATE_FILE, PRIVATE_FOLDER = 0o600, 0o700


def _private_copy(source: Path, target: Path) -> None:
    with (
        source.open("rb") as read,
        os.fdopen(
            os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE), "wb"
        ) as write,
    ):
        shutil.copyfileobj(read, write, CHUNK)
    target.chmod(PRIVATE_FILE)  # a file that was there kept its mode through O_CREAT


@dataclass(frozen=True)
class BackupStore:
    url: str

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")

    @functools.cached_property
    def _s3(self):
        """Built once per store (0.15 s each): a backup puts, verifies and a restore gets every
        file through it. Imported on use: a local backup needs no S3 client."""
        from data_platform.resources.landing import s3_client

        return s3_client()

    def _key(self, name: str) -> tuple[str, str]:
        parsed = urlparse(self.url)
        prefix = parsed.path.strip("/")
        return parsed.netloc, f"{prefix}/{name}" if prefix else name

    def names(self) -> list[str]:
        """Every file of the backup, relative to its root."""
        if not self.is_s3:
            root = Path(self.url)
            return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        bucket, prefix = self._key("")
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", []))

    def put(self, local: Path, name: str) -> None:
        if self.is_s3:
            self._s3.upload_file(str(local), *self._key(name))
            return
        target = Path(self.url) / name
        target.parent.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
        # Whole or absent, as an S3 object is: a copy cut short (a full disk, a kill) must not
        # leave a manifest that seals half a backup.
        partial = target.with_name(f".{target.name}.partial")
        _private_copy(local, partial)
        os.replace(partial, target)

    def get(self, name: str, local: Path) -> None:
        local.parent.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
        if self.is_s3:
            self._s3.download_file(*self._key(name), str(local))
            local.chmod(PRIVATE_FILE)
        else:
            _private_copy(Path(self.url) / name, local)

    def sha256(self, name: str) -> str:
        """The stored file's checksum, read back from where it is stored."""
        if not self.is_s3:
            return sha256_file(Path(self.url) / name)
        digest = hashlib.sha256()
        body = self._s3.get_object(Bucket=self._key(name)[0], Key=self._key(name)[1])["Body"]
        for chunk in body.iter_chunks(CHUNK):
            digest.update(chunk)
        return digest.hexdigest()

    def delete(self) -> None:
        """Remove the whole backup (retention). A local one that stays, whole or in part, is a
        BackupError: ignored, the schedule said it deleted a backup still filling the disk."""
        if not self.is_s3:
            try:
                shutil.rmtree(self.url)
            except OSError as error:
                if Path(self.url).exists():  # gone meanwhile (another prune) is deleted too
                    raise BackupError(
                        f"the backup {self.url} could not be deleted ({error}): fix what "
                        "stops it (permissions, an immutable file), or remove it by hand"
                    ) from None
            return
        client = self._s3
        for name in self.names():
            client.delete_object(Bucket=self._key(name)[0], Key=self._key(name)[1])

    def child(self, name: str) -> BackupStore:
        return BackupStore(f"{self.url.rstrip('/')}/{name}")
