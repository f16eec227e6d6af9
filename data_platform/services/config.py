"""Environment -> the settings of the local services: where their state lives, their ports."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from data_platform.settings import SettingsError, is_whole_number, local_folder

DEFAULT_POSTGRES_PORT = 15432
DEFAULT_REDIS_PORT = 16379
POSTGRES_PORT_VARIABLE = "DATA_PLATFORM_POSTGRES_PORT"
REDIS_PORT_VARIABLE = "DATA_PLATFORM_REDIS_PORT"
DEFAULT_CELERY_WORKERS = 2


@dataclass(frozen=True)
class ServicesConfig:
    """Where the services keep their state and which ports they bind (always on 127.0.0.1)."""

    platform_home: Path
    postgres_port: int
    redis_port: int
    celery_workers: int
    # The environment the services were configured from: Celery workers inherit it, so they
    # load the same platform settings (warehouse, landing zone, PII salt) as the CLI and the UI.
    environ: Mapping[str, str]

    @property
    def root(self) -> Path:
        return self.platform_home / "services"

    def state_dir(self, name: str) -> Path:
        return self.root / name


def _positive_int(env: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not is_whole_number(raw, 1, maximum):
        raise SettingsError(
            f"{name}={raw!r} is not a number from 1 to {maximum}: set it so or unset it "
            f"(default {default})"
        )
    return int(raw)


def load_services_config(environ: Mapping[str, str] | None = None) -> ServicesConfig:
    env = dict(os.environ if environ is None else environ)
    # A file or a URL there was a NotADirectoryError traceback, or a folder `./s3:/bucket/x`.
    home = local_folder(
        "DATA_PLATFORM_HOME", env.get("DATA_PLATFORM_HOME", "").strip() or ".data_platform"
    )
    return ServicesConfig(
        platform_home=home,
        postgres_port=_positive_int(env, POSTGRES_PORT_VARIABLE, DEFAULT_POSTGRES_PORT, 65535),
        redis_port=_positive_int(env, REDIS_PORT_VARIABLE, DEFAULT_REDIS_PORT, 65535),
        celery_workers=_positive_int(
            env, "DATA_PLATFORM_CELERY_WORKERS", DEFAULT_CELERY_WORKERS, 64
        ),
        environ=env,
    )
