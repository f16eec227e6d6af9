"""Which database a Dagster instance's dagster.yaml puts it on, and on SQLite whether its files
are in DAGSTER_HOME: the one rule backup and restore share.

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

import os
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
    return storage_kind(_loaded(config), config)


def _loaded(config: Path) -> object:
    try:
        return yaml.safe_load(config.read_text())
    except yaml.YAMLError as error:
        raise BackupError(f"{config} is not YAML ({error.__class__.__name__}): fix it") from None


def storage_kind(config: object, where: Path) -> StorageKind:
    """The kind of a loaded dagster.yaml (`where` names it in a refusal). A storage that is
    neither (MySQL, a class of another package) or an instance split over both is refused:
    a backup would dump one database and miss the others, or copy files that hold nothing."""
    sections = _storage_sections(config)
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


def check_sqlite_inside(config_dir: Path, dagster_home: Path, named: str, fix: str) -> None:
    """Refuse a SQLite instance whose `config_dir/dagster.yaml` (`named` in the line) sets a
    storage's base_dir outside `dagster_home`, followed by `fix`. Its databases are the instance
    (runs, event logs, cursors), yet a backup copies DAGSTER_HOME only and a restore puts the
    copy there: an outside folder was left out of the backup, and the restored instance read
    that folder instead of the backup's files."""
    config = config_dir / "dagster.yaml"
    if not config.exists():
        return
    home = dagster_home.resolve()
    folders = {
        name: _folder(_base_dir(section), config)
        for name, section in _storage_sections(_loaded(config)).items()
    }
    outside = [
        f"its {NAMES[name]} in {folder}"
        for name, folder in folders.items()
        if folder is not None and not folder.is_relative_to(home)
    ]
    if outside:
        raise BackupError(
            f"{named} puts {', '.join(outside)}, outside DAGSTER_HOME ({dagster_home}): {fix}"
        )


def compute_logs_outside(dagster_home: Path) -> Path | None:
    """The folder `dagster_home/dagster.yaml` keeps runs' compute logs in (Dagster's
    LocalComputeLogManager with a `base_dir`), when it is outside `dagster_home`: a backup,
    which copies DAGSTER_HOME, holds none of those logs. Not refused as the databases are: the
    logs are keyed by run and only appended to, so a restore here reads them as they are, and
    one elsewhere shows those runs without logs. Another manager keeps them elsewhere on purpose
    (S3, a blob store): None."""
    config = dagster_home / "dagster.yaml"
    loaded = _loaded(config) if config.exists() else None
    section = loaded.get("compute_logs") if isinstance(loaded, dict) else None
    if not isinstance(section, dict) or section.get("class") != "LocalComputeLogManager":
        return None
    settings = section.get("config")
    folder = _folder(settings.get("base_dir") if isinstance(settings, dict) else None, config)
    return None if folder is None or folder.is_relative_to(dagster_home.resolve()) else folder


def _base_dir(section: object) -> object:
    """The base_dir a SQLite section sets, as written: `storage: sqlite:`, `storage: custom:`
    or a storage's own section (its module/class and `config:`)."""
    if not isinstance(section, dict):
        return None
    section = section.get("custom", section)
    settings = section.get("sqlite", section.get("config")) if isinstance(section, dict) else None
    return settings.get("base_dir") if isinstance(settings, dict) else None


def _folder(base_dir: object, config: Path) -> Path | None:
    """`base_dir` as Dagster resolves it in this process: an `env:` value read, a relative
    path from the working directory. None when unset: Dagster's default, DAGSTER_HOME."""
    if isinstance(base_dir, dict) and "env" in base_dir:
        name = str(base_dir["env"])
        if name not in os.environ:
            raise BackupError(f"{config} reads {name}, which is not set: set it")
        base_dir = os.environ[name]
    return Path(base_dir).resolve() if isinstance(base_dir, str) and base_dir else None


def _storage_sections(config: object) -> dict[str, object]:
    """The sections that choose the storage, as Dagster picks them (falsy ones are unset)."""
    if not isinstance(config, dict):
        return {"storage": None}
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
