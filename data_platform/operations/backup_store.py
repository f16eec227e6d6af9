"""Where backups live: a local folder or s3://bucket/prefix, behind one small interface.

S3 goes through boto3 with AWS_ENDPOINT_URL honoured, as the landing zone does, so a backup
can sit next to the landing zone on any S3-compatible store; its objects are encrypted there
when DATA_PLATFORM_BACKUP_SSE asks for it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

from data_platform.settings import SettingsError

CHUNK = 1 << 20
# Server-side encryption of a backup's S3 objects; unset, none is asked for.
SSE_VARIABLE = "DATA_PLATFORM_BACKUP_SSE"
SSE_KMS_KEY_VARIABLE = "DATA_PLATFORM_BACKUP_SSE_KMS_KEY_ID"
SSE_VALUES = ("AES256", "aws:kms")
# A write's errors that name no file: a full disk, a file over the size limit, a full quota.
_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


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


def private_folders(folder: Path) -> None:
    """`folder` and each missing folder above it, made the owner's only. `mkdir(parents=True)`
    gives the mode to the last one alone: a backup's own top folder was made 0755."""
    for missing in reversed([f for f in (folder, *folder.parents) if not f.exists()]):
        missing.mkdir(mode=PRIVATE_FOLDER, exist_ok=True)


def _private_file(target: Path) -> BinaryIO:
    """`target`, emptied and open for writing, its owner's only before a byte is written: a
    chmod once the download was whole left the salt at the umask's mode (0644) meanwhile, and
    a file that was there at its own mode while it was copied over."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        # A file that was there keeps its mode through O_CREAT, and a umask like 0o277 takes
        # the owner's write from a new one: set, not assumed.
        os.fchmod(fd, PRIVATE_FILE)
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def _private_copy(source: Path, target: Path) -> None:
    with source.open("rb") as read, _private_file(target) as write:
        shutil.copyfileobj(read, write, CHUNK)


def server_side_encryption(environ: Mapping[str, str]) -> dict[str, str]:
    """What every S3 put of a backup sends (DATA_PLATFORM_BACKUP_SSE): a backup holds the PII
    salt and raw e-mails, and was stored unencrypted. Unset, nothing, as before: a MinIO without
    KMS refuses the header. A wrong value is one line (SettingsError, like every setting's)."""
    sse = environ.get(SSE_VARIABLE, "").strip()
    key_id = environ.get(SSE_KMS_KEY_VARIABLE, "").strip()
    if sse and sse not in SSE_VALUES:
        raise SettingsError(
            f"{SSE_VARIABLE}={sse!r} is not a server-side encryption: set AES256 or aws:kms "
            f"(optionally with {SSE_KMS_KEY_VARIABLE}), or unset it for none"
        )
    # Ignored, the key would have left the backup unencrypted (SSE unset) or been refused by S3
    # at the first put, after the whole snapshot (AES256): neither is what its setter meant.
    if key_id and sse != "aws:kms":
        raise SettingsError(
            f"{SSE_KMS_KEY_VARIABLE} is set but {SSE_VARIABLE} is {sse or 'unset'}, not aws:kms "
            f"(the only encryption with a KMS key): set {SSE_VARIABLE}=aws:kms, or unset "
            f"{SSE_KMS_KEY_VARIABLE}"
        )
    if not sse:
        return {}
    return {"ServerSideEncryption": sse, **({"SSEKMSKeyId": key_id} if key_id else {})}


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

    @functools.cached_property
    def _put_args(self) -> dict[str, str]:
        """Read once per store; take_backup and the schedule check it before their snapshot."""
        return server_side_encryption(os.environ)

    def _key(self, name: str) -> tuple[str, str]:
        parsed = urlparse(self.url)
        prefix = parsed.path.strip("/")
        return parsed.netloc, f"{prefix}/{name}" if prefix else name

    def check_writable(self) -> None:
        """A local destination that could not be made or written, refused before the snapshot:
        a folder under a file, or under one this user may not write, failed the first file's
        copy, after the instance dump and the warehouse copy under its lock. Nothing is made
        here: a backup refused later leaves no folder. (On S3, listing it checked the bucket
        and the credentials.)"""
        if self.is_s3:
            return
        root = Path(self.url).absolute()
        existing = next(folder for folder in (root, *root.parents) if folder.exists())
        if not existing.is_dir():
            why = "Not a directory"
        elif not os.access(existing, os.W_OK | os.X_OK):
            why = "Permission denied"
        else:
            return
        raise BackupError(
            f"{self.url} cannot be written ({why}: {existing}): choose a folder this user can "
            "create and write"
        )

    def first_missing(self) -> Path | None:
        """The topmost folder of a local destination that does not exist yet (the destination
        itself, or one above it): what a backup into it makes, and removes if it fails. None
        on S3 or when the destination exists."""
        if self.is_s3:
            return None
        root = Path(self.url).absolute()
        missing = [folder for folder in (root, *root.parents) if not folder.exists()]
        return missing[-1] if missing else None

    def discard(self, made: Path | None) -> None:
        """Remove what a failed backup stored in this local destination, which was empty (or
        absent) before it: `made`, the folder it made (see first_missing), or else the files in
        the destination, which stays (it may be a mount point). A partial copy left there kept
        the disk full and made the same command's re-run refused ("not empty"). A BackupError
        when some of it stays."""
        if self.is_s3:
            return
        root = Path(self.url)
        try:
            if made is not None:
                if made.exists():
                    shutil.rmtree(made)
            elif root.is_dir():
                for entry in root.iterdir():
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
        except OSError as error:
            raise BackupError(
                f"the partial backup in {self.url} could not be removed ({error}): remove it "
                "by hand, then run the backup again"
            ) from None

    def names(self) -> list[str]:
        """Every file of the backup, relative to its root."""
        if not self.is_s3:
            root = Path(self.url)
            return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        bucket, prefix = self._key("")
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", []))

    def unfinished(self) -> list[str]:
        """The files whose upload began and never ended (a backup killed mid-put; S3 only):
        not among `names`, yet their parts are stored, and billed, until `delete` aborts them."""
        if not self.is_s3:
            return []
        from data_platform.resources.landing import incomplete_uploads

        bucket, prefix = self._key("")
        return sorted(u["Key"][len(prefix) :] for u in incomplete_uploads(self._s3, bucket, prefix))

    def put(self, local: Path, name: str) -> None:
        if self.is_s3:
            self._s3.upload_file(str(local), *self._key(name), ExtraArgs=self._put_args)
            return
        target = Path(self.url) / name
        private_folders(target.parent)
        # Whole or absent, as an S3 object is: a copy cut short (a full disk, a kill) must not
        # leave a manifest that seals half a backup.
        partial = target.with_name(f".{target.name}.partial")
        try:
            _private_copy(local, partial)
            os.replace(partial, target)
        except OSError as error:
            # Its bytes are no use, and on a full disk they are what keeps it full.
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            if error.filename is not None:
                raise
            # A write's ENOSPC or EFBIG names no file: "[Errno 28] No space left on device"
            # alone did not say which disk to free.
            raise OSError(error.errno, error.strerror, str(target)) from error

    def get(self, name: str, local: Path) -> None:
        private_folders(local.parent)
        try:
            if self.is_s3:
                # Into a file made 0600 first: download_file wrote a temporary file at the
                # umask's mode, chmodded only once whole. Not whole or absent as that one was: a
                # download cut short raises, and a restore checks every file's checksum first.
                with _private_file(local) as write:
                    self._s3.download_fileobj(*self._key(name), write)
            else:
                _private_copy(Path(self.url) / name, local)
        except OSError as error:
            # As in `put`: a restore's "[Errno 28] No space left on device" named no disk.
            if error.filename is not None or error.errno not in _FULL:
                raise
            raise OSError(error.errno, error.strerror, str(local)) from error

    def remove(self, name: str) -> None:
        """Remove one stored file (gone already is fine)."""
        if self.is_s3:
            self._s3.delete_object(Bucket=self._key(name)[0], Key=self._key(name)[1])
            return
        (Path(self.url) / name).unlink(missing_ok=True)

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
        from data_platform.resources.landing import abort_uploads

        client = self._s3
        for name in self.names():
            client.delete_object(Bucket=self._key(name)[0], Key=self._key(name)[1])
        abort_uploads(client, *self._key(""), lambda key: True)

    def child(self, name: str) -> BackupStore:
        return BackupStore(f"{self.url.rstrip('/')}/{name}")
