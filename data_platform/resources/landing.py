"""The landing zone behind one interface, whether it is a local folder or an S3 prefix.

Ingestion, sensors and the simulator only speak in keys relative to the landing root
(`events/dt=2026-01-05/a.jsonl`), so the same code path serves both back ends.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
from pydantic import PrivateAttr


@dataclass(frozen=True)
class LandingFile:
    """One file in the landing zone; `modified` is epoch seconds, for sensor cursors."""

    key: str
    size: int
    modified: float


class LandingZone(dg.ConfigurableResource):
    """A local folder or `s3://bucket/prefix` (DATA_PLATFORM_LANDING); S3 honours AWS_ENDPOINT_URL."""

    url: str

    _client: object | None = PrivateAttr(default=None)

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
            # Imported on first use: dagster-aws costs ~0.6 s at every Definitions load.
            from dagster_aws.s3 import S3Resource

            endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
            self._client = S3Resource(endpoint_url=endpoint).get_client()
        return self._client

    def list_files(self, prefix: str = "") -> list[LandingFile]:
        """Every file under `prefix` (relative to the root), sorted by key."""
        if self.is_s3:
            bucket, root = self._bucket_and_prefix
            paginator = self._s3().get_paginator("list_objects_v2")
            files = [
                LandingFile(obj["Key"][len(root) :], obj["Size"], obj["LastModified"].timestamp())
                for page in paginator.paginate(Bucket=bucket, Prefix=root + prefix)
                for obj in page.get("Contents", [])
                if not obj["Key"].endswith("/")
            ]
        else:
            root_path = Path(self.url)
            base = root_path / prefix
            candidates = base.rglob("*") if base.is_dir() else []
            files = [
                LandingFile(path.relative_to(root_path).as_posix(), stat.st_size, stat.st_mtime)
                for path in candidates
                if path.is_file() and not path.name.startswith(".")
                for stat in [path.stat()]
            ]
        return sorted(files, key=lambda f: f.key)

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
        with tempfile.TemporaryDirectory(prefix="landing-") as tmp:
            # Keep the file name: DuckDB picks the decompression from the extension (.gz).
            target = Path(tmp) / Path(key).name
            self._download(bucket, root + key, target)
            yield target

    def _download(self, bucket: str, s3_key: str, target: Path) -> None:
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
        """Publish a finished file under `key`; readers never see it half-written."""
        if self.is_s3:
            bucket, root = self._bucket_and_prefix
            self._s3().upload_file(str(local_path), bucket, root + key)
            return
        target = Path(self.url) / key
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        shutil.copyfile(local_path, partial)
        os.replace(partial, target)

    def write_bytes(self, key: str, data: bytes) -> None:
        with tempfile.NamedTemporaryFile(suffix=Path(key).name) as tmp:
            tmp.write(data)
            tmp.flush()
            self.upload_file(Path(tmp.name), key)
