"""Which database a Dagster instance's dagster.yaml puts it on: the one rule backup and restore
share.

Backup dumps a PostgreSQL instance and copies a SQLite one; restore refuses to put one kind in
a home configured for the other. Each used to tell the kind its own way (a `postgres:` key or
dagster_postgres module anywhere in the file, a class name, an isinstance on the opened
instance), and where the three disagreed (a mixed configuration, a SQLite base_dir under a
folder named postgres) a backup was taken as one kind and refused by the restore as the other.
The config is read as Dagster reads it (`InstanceRef.from_dir`): any of `run_storage`,
`event_log_storage`, `schedule_storage` set and each names its own class (one left out is
Dagster's SQLite default), else `storage` picks all three (`postgres`, `sqlite`, `mysql` or
`custom`), else all three are SQLite. Read from the YAML, without connecting or reading the
`env:` values: the kind is known before anything is downloaded, and whatever the server's state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml

from data_platform.operations.backup_store import BackupError

StorageKind = Literal["sqlite", "postgres"]
PER_STORAGE = ("run_storage", "event_log_storage", "schedule_storage")
# The `storage:` selector's choices whose kind is known without a class (mysql is neither).
UNIFIED_KINDS: dict[str, StorageKind] = {"postgres": "postgres", "sqlite": "sqlite"}
NAMES = {
    "storage": "storage",
    "run_storage": "run storage",
    "event_log_storage": "event log storage",
    "schedule_storage": "schedule storage",
}
KIND_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def instance_storage(dagster_home: Path) -> StorageKind | None:
    """The kind of storage `dagster_home/dagster.yaml` gives its instance; None without that
    file (Dagster's default, SQLite in the folder, and restore then puts the backup's file in
    place)."""
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        return None
    try:
        loaded = yaml.safe_load(config.read_text())
    except yaml.YAMLError as error:
        raise BackupError(f"{config} is not YAML ({error.__class__.__name__}): fix it") from None
    return storage_kind(loaded, config)


def storage_kind(config: object, where: Path) -> StorageKind:
    """The kind of a loaded dagster.yaml (`where` names it in a refusal). A storage that is
    neither (MySQL, a class of another package) or an instance split over both is refused:
    a backup would dump one database and miss the others, or copy files that hold nothing."""
    sections = _storage_sections(config if isinstance(config, dict) else {})
    kinds = {name: _section_kind(name, section) for name, section in sections.items()}
    for name, kind in kinds.items():
        if kind is None:
            raise BackupError(
                f"{where} puts the Dagster instance's {NAMES[name]} on {_named(sections[name])}: "
                "backup and restore know SQLite and PostgreSQL (dagster_postgres) only"
            )
    if len(set(kinds.values())) > 1:
        split = ", ".join(f"its {NAMES[n]} on {KIND_NAMES[k]}" for n, k in kinds.items() if k)
        raise BackupError(
            f"{where} puts {split}: backup and restore take an instance whose storages are all "
            "on one of them (storage: postgres or sqlite)"
        )
    return next(kind for kind in kinds.values() if kind is not None)


def _storage_sections(config: dict) -> dict[str, object]:
    """The sections that choose the storage, as Dagster picks them (falsy ones are unset)."""
    if any(config.get(name) for name in PER_STORAGE):
        return {name: config.get(name) for name in PER_STORAGE}
    return {"storage": config.get("storage")}


def _section_kind(name: str, section: object) -> StorageKind | None:
    if not section:
        return "sqlite"  # Dagster's default: SQLite files in the instance's folder
    if name != "storage":
        return _class_kind(section)
    if not isinstance(section, dict) or len(section) != 1:
        return None
    [(choice, value)] = section.items()
    if choice == "custom":
        return _class_kind(value)
    return UNIFIED_KINDS.get(choice)


def _class_kind(section: object) -> StorageKind | None:
    """A `module`/`class` section by its module: dagster_postgres's classes, or Dagster's own
    (its SQLite storages). Not by a word found anywhere: a base_dir under /srv/postgres-...
    is still SQLite."""
    module = section.get("module") if isinstance(section, dict) else None
    if not isinstance(module, str):
        return None
    if module == "dagster_postgres" or module.startswith("dagster_postgres."):
        return "postgres"
    if module == "dagster" or module.startswith("dagster."):
        return "sqlite"
    return None


def _named(section: object) -> str:
    """What a refused section names, for the refusal's line."""
    if isinstance(section, dict):
        inner = section.get("custom", section)
        if isinstance(inner, dict) and isinstance(inner.get("module"), str):
            return str(inner["module"])
        return ", ".join(map(str, section)) or "nothing"
    return repr(section)
