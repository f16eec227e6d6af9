"""The landing zone behind one interface, whether it is a local folder or an S3 prefix.

Ingestion, sensors and the simulator only speak in keys relative to the landing root
(`events/dt=2026-01-05/a.jsonl`), so the same code path serves both back ends.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pydantic import PrivateAttr

from data_platform.resources.run_pinned import RunPinnedResource, landing_pin
from data_platform.scratch import scratch_folder
from data_platform.settings import SettingsError, aws_endpoint_url, without_userinfo

# A file rewritten while it was downloaded is read again this many times in all.
DOWNLOAD_ATTEMPTS = 3
# A local file being written is `.<name>` plus this until its rename.
_PARTIAL = ".partial"


def s3_client():
    """The platform's S3 client (the landing zone's, backups'), on AWS_ENDPOINT_URL when set:
    dagster-aws's, whose retries (5 attempts) outlast a throttled or dropped request."""
    # Imported on first use: dagster-aws costs ~0.6 s at every Definitions load.
    from dagster_aws.s3 import S3Resource

    return S3Resource(endpoint_url=aws_endpoint_url(dict(os.environ))).get_client()


def s3_access_advice(bucket: str | None = None) -> str:
    """What to check when S3 refuses a request (no bucket, no or wrong credentials)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    endpoint = without_userinfo(endpoint) if endpoint else "AWS (AWS_ENDPOINT_URL unset)"
    return (
        f"check that {f'bucket {bucket}' if bucket else 'the bucket'} exists at {endpoint} and "
        "that the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or a "
        "role) may list and put objects"
    )


def incomplete_uploads(s3, bucket: str, prefix: str) -> Iterator[dict]:
    """The incomplete multipart uploads (`Key`, `UploadId`) under `prefix`: what a put killed
    mid-way leaves, no object, its parts stored (and billed) until aborted. Aborting while
    paging is safe: each page resumes after the last key it returned."""
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Uploads", [])


def abort_uploads(s3, bucket: str, prefix: str, abandoned: Callable[[str], bool]) -> set[str]:
    """Abort the incomplete multipart uploads under `prefix` whose key `abandoned` accepts;
    the keys aborted (a key put again after each kill has several uploads)."""
    aborted = set()
    for upload in incomplete_uploads(s3, bucket, prefix):
        if abandoned(upload["Key"]):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            aborted.add(upload["Key"])
    return aborted


@dataclass(frozen=True)
class LandingFile:
    """One file in the landing zone; `modified` is epoch seconds, for sensor cursors.

    `version` tells two writes apart where size and time may not. S3 stamps whole seconds, so a
    file rewritten with the same size within a second looked unchanged; its ETag (a hash of
    the content) differs. A local file corrected in place with its size and mtime kept (`cp -p`,
    `rsync -a`, `touch -r`) looked unchanged for good; its version is `inode:ctime_ns`, which
    every write moves and no tool can set (setting the mtime moves the ctime; a file renamed
    into place is another inode)."""

    key: str
    size: int
    modified: float
    version: str = ""
    # A local name that is not UTF-8 has its key spelled with \x escapes (`caf\xe9.jsonl`), which
    # names no file: such a file is dead-lettered by its name, never opened.
    name_is_utf8: bool = True
    # Why the walk could not tell what a local entry holds (a folder it may not list, a
    # symbolic link that loops or whose target is gone): dead-lettered whole with this reason.
    # Raised, it failed the day and every landing sensor tick; skipped, a dangling link's
    # file was lost unseen.
    unlisted: str = ""
    # When the store last wrote the file or its name, by its own clock (epoch seconds): a local
    # file's ctime, which `mv`, `cp -p` and `rsync -a` cannot carry over as they do the mtime;
    # None on S3, whose LastModified is that already. The sensor tells a day that only lost files
    # from one that also gained some by it.
    changed: float | None = None


class LandingZone(RunPinnedResource):
    """A local folder or `s3://bucket/prefix` (DATA_PLATFORM_LANDING); S3 honours AWS_ENDPOINT_URL."""

    url: str

    _client: object | None = PrivateAttr(default=None)
    PIN = "landing"

    @property
    def pin(self) -> str:
        return landing_pin(self.url)

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")

    @property
    def _bucket_and_prefix(self) -> tuple[str, str]:
        parsed = urlparse(self.url)
        prefix = parsed.path.strip("/")
        return parsed.netloc, f"{prefix}/" if prefix else ""

    def _s3(self):
        if self._client is None:
            self._client = s3_client()
        return self._client

    def check_reachable(self) -> None:
        """On S3, list one key of the zone: a bucket missing or credentials refused raise here,
        once, rather than in each step that reads the zone. A local zone must exist: a
        mistyped folder listed no file, and every run read nothing and succeeded."""
        self.require_run_pin()
        if self.is_s3:
            bucket, prefix = self._bucket_and_prefix
            self._s3().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        elif not Path(self.url).is_dir():
            raise SettingsError(
                f"DATA_PLATFORM_LANDING={self.url!r} does not exist: point it at the landing "
                "zone's folder (unset, it is DATA_PLATFORM_HOME/landing), or land the first "
                "files there (data-platform simulate does), then run again"
            )

    def list_files(
        self, prefix: str = "", start_after: str = "", end_before: str | None = None
    ) -> list[LandingFile]:
        """Every file under `prefix` (relative to the root), sorted by key.

        `start_after` < key < `end_before` narrows it to a range of keys in S3's order (code
        points, as Python compares strings): a range of day folders is then one listing that
        reads only those days, S3 starting at StartAfter and stopping at the first key past the
        end, a local walk skipping the folders outside.
        """
        if self.is_s3:
            files = self._list_s3(prefix, start_after, end_before)
        else:
            root = Path(self.url)
            base = root / prefix
            under = base.relative_to(root).as_posix() + "/" if base != root else ""
            files = (
                list(_walk(base, under, start_after, end_before, root.resolve(), top=True))
                if base.is_dir()
                else []
            )
        return sorted(files, key=lambda f: f.key)

    def _list_s3(self, prefix: str, start_after: str, end_before: str | None) -> list[LandingFile]:
        root = self._bucket_and_prefix[1]
        after = {"StartAfter": root + start_after} if start_after else {}
        files = []
        for page in self._list_pages(Prefix=root + prefix, **after):
            for obj in page.get("Contents", []):
                key = obj["Key"][len(root) :]
                if end_before is not None and key >= end_before:
                    return files  # the paginator is lazy: no further page is requested
                # A key ending in `/` is a folder's marker, unless it holds bytes: then it is
                # a file no reader names, dead-lettered as misnamed instead of lost unseen.
                if (obj["Size"] or not key.endswith("/")) and not _hidden(key):
                    modified = obj["LastModified"].timestamp()
                    files.append(LandingFile(key, obj["Size"], modified, obj.get("ETag", "")))
        return files

    def _list_pages(self, **params) -> Iterable[dict]:
        """ListObjectsV2 pages of the bucket, each requested when the loop reaches it."""
        paginator = self._s3().get_paginator("list_objects_v2")
        return paginator.paginate(Bucket=self._bucket_and_prefix[0], **params)

    def list_entries(self, prefix: str) -> list[str]:
        """The folders (as keys ending in `/`) and files directly under `prefix`, sorted.

        One S3 request per 1,000 entries, whatever the folders hold (S3: its common prefixes
        and the objects beside them): a sensor learns which days exist without listing their
        files, and sees what was put beside them.
        """
        if self.is_s3:
            root = self._bucket_and_prefix[1]
            entries = []
            for page in self._list_pages(Prefix=root + prefix, Delimiter="/"):
                entries += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
                # The folder's own placeholder object (`events/`, as consoles create) is not
                # an entry of it.
                entries += [o["Key"] for o in page.get("Contents", []) if o["Key"] != root + prefix]
            keys = (key[len(root) :] for key in entries)
            return sorted(k for k in keys if not _hidden(k.rstrip("/")))
        base = Path(self.url) / prefix
        if not base.is_dir():
            return []
        return sorted(
            f"{prefix}{_printable(entry.name)}{'/' if _is_folder(entry) else ''}"
            for entry in os.scandir(base)
            if not _hidden(entry.name)
        )

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        """A local path with the file's bytes: the file itself, or a temporary download from S3.

        A key gone from S3 raises FileNotFoundError and a denied one PermissionError, as opening
        a local file would: readers handle a file that cannot be read the same way on both.
        """
        if not self.is_s3:
            yield Path(self.url) / key
            return
        bucket, root = self._bucket_and_prefix
        with scratch_folder("landing") as tmp:
            # Not the key's name: S3 allows 1,024 bytes, a local name 255, less the suffix
            # boto3 adds while it writes (a valid file of a 250-byte name was dead-lettered,
            # "File name too long"). DuckDB picks the decompression from the extension.
            target = tmp / ("landed.gz" if key.endswith(".gz") else "landed")
            self._download(bucket, root + key, target)
            yield target

    def _download(self, bucket: str, s3_key: str, target: Path) -> None:
        """Download a key; a file rewritten while its parts were read is read again, whole.

        boto3 reads a large object in ranged parts, each asking for the version the first had:
        a producer rewriting the file in between made the run fail. After DOWNLOAD_ATTEMPTS it
        is an OSError, so its day goes on and the file is dead-lettered with the reason."""
        from s3transfer.exceptions import S3DownloadFailedError

        for _ in range(DOWNLOAD_ATTEMPTS):
            try:
                self._download_once(bucket, s3_key, target)
                return
            except S3DownloadFailedError as error:
                changed = error
        raise OSError(
            errno.EIO,
            f"the file changed while it was read, {DOWNLOAD_ATTEMPTS} times ({changed}): land it "
            "once, complete, then re-run the day",
            f"s3://{bucket}/{s3_key}",
        )

    def _download_once(self, bucket: str, s3_key: str, target: Path) -> None:
        from botocore.exceptions import ClientError

        try:
            self._s3().download_file(bucket, s3_key, str(target))
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey"):
                raise FileNotFoundError(
                    errno.ENOENT, "no such key", f"s3://{bucket}/{s3_key}"
                ) from error
            if code in ("403", "AccessDenied"):
                raise PermissionError(
                    errno.EACCES, "access denied", f"s3://{bucket}/{s3_key}"
                ) from error
            raise

    def upload_file(self, local_path: Path, key: str) -> None:
        """Publish a finished file under `key`; readers never see it half-written, and once
        this returns it survives a power cut (S3: the upload completed)."""
        if self.is_s3:
            bucket, root = self._bucket_and_prefix
            self._s3().upload_file(str(local_path), bucket, root + key)
            return
        self._publish_local(key, lambda partial: shutil.copyfile(local_path, partial))

    def delete_file(self, key: str) -> None:
        """Remove the file under `key` if there is one, and its folder once empty: a folder
        left empty would still look like a partition to a listing of folders."""
        if self.is_s3:
            bucket, root = self._bucket_and_prefix
            self._s3().delete_object(Bucket=bucket, Key=root + key)
            return
        path = Path(self.url) / key
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty, or already gone
            path.parent.rmdir()

    def write_bytes(self, key: str, data: bytes) -> None:
        """`upload_file` of bytes in hand, with no temporary copy: a local landing zone writes
        them straight to the partial, S3 uploads them from memory.

        The S3 upload once went through a temporary file in TMPDIR (up to a batch's 64 MiB),
        which a writer killed mid-upload (kill -9) left there for good: nothing sweeps TMPDIR's
        randomly named files. An incomplete upload it leaves in the bucket is for
        `remove_partials`."""
        if not self.is_s3:
            self._publish_local(key, lambda partial: partial.write_bytes(data))
            return
        bucket, root = self._bucket_and_prefix
        # BytesIO shares the bytes until written to: s3transfer copies a part at a time.
        self._s3().upload_fileobj(io.BytesIO(data), bucket, root + key)

    def _publish_local(self, key: str, write: Callable[[Path], object]) -> None:
        """Write a dot-named partial (hidden from listings), fsync it, rename it into place,
        then fsync the folder, and the parent of each folder just created.

        Only this order survives a power cut: a rename reaching the disk before the data could
        leave an empty or truncated file under the final name, which readers (and the stream's
        adoption) would trust; an unsynced new dt= folder could vanish with its files. Two
        fsyncs per file in a folder that exists, one more per new folder.

        A write that fails (a full disk) removes its partial, which no listing shows and nothing
        else would remove; one a killed writer left is for `remove_partials`."""
        target = Path(self.url) / key
        created = _make_folders(target.parent)
        partial = target.with_name(f".{target.name}{_PARTIAL}")
        try:
            write(partial)
            _fsync(partial)
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        for folder in (target.parent, *(made.parent for made in created)):
            _fsync(folder, os.O_DIRECTORY)

    def remove_partials(self, prefix: str, abandoned: Callable[[str], bool]) -> list[str]:
        """Remove the partials in the folders directly under `prefix` whose file's name (the
        one they were to be published as) `abandoned` accepts; the keys of those files.

        A writer killed mid-write (kill -9) leaves its partial behind, which only the writer's
        successor can tell from one being written. On S3 that is an incomplete multipart upload:
        no object, so no reader sees it, but its parts are stored (and billed) until aborted."""
        if self.is_s3:
            return self._abort_uploads(prefix, abandoned)
        root = Path(self.url)
        removed = []
        for partial in sorted((root / prefix).glob(f"*/.*{_PARTIAL}")):
            name = partial.name[1 : -len(_PARTIAL)]
            if partial.is_file() and abandoned(name):
                partial.unlink(missing_ok=True)
                removed.append(partial.with_name(name).relative_to(root).as_posix())
        return removed

    def _abort_uploads(self, prefix: str, abandoned: Callable[[str], bool]) -> list[str]:
        """Abort the incomplete multipart uploads `remove_partials` would remove locally: of a
        key in a folder directly under `prefix`, named as `abandoned` accepts."""
        bucket, root = self._bucket_and_prefix

        def in_a_folder_and_abandoned(key: str) -> bool:
            folder, _, name = key[len(root + prefix) :].partition("/")
            return bool(folder and name and "/" not in name and abandoned(name))

        aborted = abort_uploads(self._s3(), bucket, root + prefix, in_a_folder_and_abandoned)
        return sorted(key[len(root) :] for key in aborted)


def _hidden(key: str) -> bool:
    """The rule both back ends apply: a key whose last part starts with '.' is no landing file
    or folder (`.name.partial` being written, `.DS_Store`, macOS's `._name`)."""
    return key.rsplit("/", 1)[-1].startswith(".")


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; the ones this call found missing."""
    missing = []
    at = folder
    while not at.is_dir():
        missing.append(at)
        at = at.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _fsync(path: Path, flags: int = 0) -> None:
    """Flush a file's data, or a folder's entries (`os.O_DIRECTORY`), to the disk."""
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _walk(
    folder: Path,
    under: str,
    start_after: str,
    end_before: str | None,
    zone: Path,
    utf8: bool = True,
    top: bool = False,
) -> Iterator[LandingFile]:
    """Files below `folder` (whose keys start with `under`) with a key in (start_after,
    end_before); hidden files are skipped (a `.name.partial` is a file being written).

    Every key below a folder `f` sorts after `f/` and before `f0` ('/' is the code point just
    before '0'), so a folder whose whole span lies outside the range is not entered.

    A folder below `top` that cannot be listed is one entry keyed `f/`, as is an entry that
    cannot be told a file or a folder, and a symbolic link out of the `zone` (its real
    folder): `LandingFile.unlisted` says why. Followed, such a link copied any file the
    platform may read into the warehouse (the PII salt, as a dead letter anyone with
    `data-platform sql` reads), for whoever may only write to the landing zone.
    """

    def in_range(key: str) -> bool:
        return start_after < key and (end_before is None or key < end_before)

    try:
        entries = list(os.scandir(folder))
    except OSError as error:
        if top:  # the source's own folder: nothing of it can be read, which is no day's file
            raise
        if in_range(under):
            yield _unlisted_entry(under, folder, error, utf8)
        return
    for entry in entries:
        name = _printable(entry.name)
        key, name_utf8 = under + name, utf8 and name == entry.name
        try:
            is_dir, is_file = entry.is_dir(), entry.is_file()
        except OSError as error:  # a symbolic link that loops: ELOOP
            if in_range(key) and not _hidden(entry.name):
                yield _unlisted_entry(key, Path(entry.path), error, name_utf8)
            continue
        if entry.is_symlink() and not Path(entry.path).resolve().is_relative_to(zone):
            listed = f"{key}/" if is_dir else key
            if in_range(listed) and not _hidden(entry.name):
                outside = PermissionError(errno.EACCES, "it leads out of the landing zone")
                yield _unlisted_entry(listed, Path(entry.path), outside, name_utf8)
            continue
        if is_dir:
            if (end_before is None or f"{key}/" < end_before) and f"{key}0" > start_after:
                yield from _walk(
                    Path(entry.path), f"{key}/", start_after, end_before, zone, name_utf8
                )
        elif _hidden(entry.name) or not in_range(key):
            continue
        elif is_file:
            stat = entry.stat()
            yield LandingFile(
                key,
                stat.st_size,
                stat.st_mtime,
                _local_version(stat),
                name_utf8,
                changed=stat.st_ctime,
            )
        elif entry.is_symlink() and not os.path.exists(entry.path):
            gone = FileNotFoundError(errno.ENOENT, "its target does not exist")
            yield _unlisted_entry(key, Path(entry.path), gone, name_utf8)
        # Otherwise a FIFO, a socket, a device (or a link to one): no file's data.


def _is_folder(entry: os.DirEntry) -> bool:
    """A symbolic link that loops is no folder (is_dir raises ELOOP: it failed every tick of
    the landing sensor); the walk of its day tells why it cannot be read."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _unlisted_entry(key: str, path: Path, error: OSError, utf8: bool) -> LandingFile:
    """The entry for `path`, which the walk could not list or tell apart, with the reason."""
    stat = path.lstat()
    if path.is_symlink():
        what = f"a symbolic link to {os.readlink(path)!r}"
        fix = "land the file itself in its place"
    else:
        what, fix = "a folder", "give the platform read access to it, or move its files out"
    return LandingFile(
        key,
        0,
        stat.st_mtime,
        _local_version(stat),
        utf8,
        unlisted=f"{what} that could not be read ({error.strerror}): {fix}, then re-run the day",
        changed=stat.st_ctime,
    )


def _local_version(stat: os.stat_result) -> str:
    """What tells a local file's writes apart when its size and mtime are kept (`cp -p`).

    The ctime moves with every change to the file, the content's or the mtime's, and only the
    kernel sets it; the inode tells a file renamed into place within one ctime tick from the
    one it replaced. A chmod or a hard link moves the ctime too, and a copy of the landing
    folder (a restore, another disk) has new inodes: its days are re-run once, which loads the
    same rows again, where missing a correction kept bad rows."""
    return f"{stat.st_ino}:{stat.st_ctime_ns}"


def _printable(name: str) -> str:
    """A file name as text: the bytes of a name that is not UTF-8 (which Python holds as lone
    surrogates, and which DuckDB, JSON cursors and hashes all refuse) as `\\x..` escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
