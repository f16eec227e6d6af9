"""The salt that hashes personal data (e-mail addresses) past staging.

Set DATA_PLATFORM_PII_SALT in production. Without it, a random salt is generated once and kept
in DATA_PLATFORM_HOME, so hashes stay stable across runs on one machine and no salt sits in code.
The resource holds the file's path, not the salt: resource config is shown in the UI, and a
salt in clear there opens every e-mail hash to a dictionary attack.

Distributed (the instance on PostgreSQL, or steps on Celery workers) there is no such default:
each worker machine would make a salt of its own, and the same address would hash differently
depending on which worker built the table. A missing DATA_PLATFORM_PII_SALT is then one line.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from data_platform.services.process import create_once

SALT_FILE = "pii_salt"
SALT_VARIABLE = "DATA_PLATFORM_PII_SALT"
# Run storages that live on one machine: any other (PostgreSQL, MySQL) is shared by machines.
LOCAL_RUN_STORAGES = ("SqliteRunStorage", "InMemoryRunStorage")


class SaltError(RuntimeError):
    """The salt file cannot be used; the message is one actionable line."""


def local_pii_salt(path: Path) -> str:
    """The machine-local salt in `path`, created on first use (readable by its owner only).

    Created complete or not at all: written to a private temp file, then linked into place, which
    fails if another process got there first (its salt is then the one). Creating it in place
    let concurrent first uses read it empty or each keep its own salt."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        create_once(path, secrets.token_hex(32))
    salt = path.read_text().strip()
    if not salt:
        raise SaltError(
            f"{path} is empty: restore it from a backup (hashes made with another salt no longer "
            "match), or delete it to start a new salt, or set DATA_PLATFORM_PII_SALT"
        )
    return salt


def is_shared_instance(instance: dg.DagsterInstance | None) -> bool:
    """Whether the instance's storage is shared by machines (not a SQLite file or memory)."""
    return instance is not None and type(instance.run_storage).__name__ not in LOCAL_RUN_STORAGES


def distributed_salt_error(why: str) -> SaltError:
    return SaltError(
        f"{SALT_VARIABLE} is not set, and {why}: a salt made on this machine would differ from "
        "the other machines' and change every e-mail hash; set the same "
        f"{SALT_VARIABLE} for every process (webserver, daemon, Celery workers)"
    )


class Privacy(dg.ConfigurableResource):
    """The PII salt: dg.EnvVar("DATA_PLATFORM_PII_SALT") when the environment provides one, else
    read from `salt_file` (created on first use) when a run needs it, on one machine only:
    `distributed` (steps on Celery workers) or a step on a shared instance refuses the file."""

    pii_salt: str | None = None
    salt_file: str | None = None
    distributed: bool = False
    # Set per step from the instance it runs on: a Celery worker may load Definitions whose
    # settings say nothing of Celery, but its instance is the shared one.
    _shared_instance: bool = PrivateAttr(default=False)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._shared_instance = is_shared_instance(context.instance)

    def salt(self) -> str:
        if self.pii_salt:
            return self.pii_salt
        if self.distributed:
            raise distributed_salt_error("steps run on Celery workers (DATA_PLATFORM_EXECUTOR)")
        if self._shared_instance:
            raise distributed_salt_error(
                "the Dagster instance is shared (its storage is not SQLite)"
            )
        if not self.salt_file:
            raise SaltError(f"no PII salt: set {SALT_VARIABLE}")
        return local_pii_salt(Path(self.salt_file))


def dbt_secret_variables(salt: str) -> dict[str, str]:
    """The salt as dbt secrets: dbt replaces the value of every environment variable named
    DBT_ENV_SECRET_* with "*****" in what it logs (stdout, which Dagster shows and keeps, and
    dbt.log) and in its errors' messages (run_results.json). Each way an error's text can hold
    the salt: in clear (Spark folds it into a plan), as the hex the Spark target hands it over
    in (`unhex(...)` in an unresolved plan or a query fragment), and as JSON escapes it (dbt
    scrubs its JSON log lines once encoded)."""
    spellings = dict.fromkeys([salt, salt.encode("utf-8").hex(), json.dumps(salt)[1:-1]])
    return {f"DBT_ENV_SECRET_DATA_PLATFORM_PII_SALT_{i}": s for i, s in enumerate(spellings)}
