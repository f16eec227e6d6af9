"""`data-platform restore SRC`: verify everything first, then put it in place.

Every file is downloaded to a staging folder and checked against the manifest before the
home is touched, so a corrupt or partial backup is refused with nothing overwritten. A home
that already holds state is refused unless --force: restoring over a live platform would mix
two histories.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath

import dagster as dg
import duckdb

from data_platform.operations import restore_journal
from data_platform.operations.backup import FORMAT, MANIFEST, versions
from data_platform.operations.backup_store import BackupError, BackupStore, sha256_file
from data_platform.operations.instance_storage import check_sqlite_inside, instance_storage
from data_platform.operations.restore_journal import Replacement
from data_platform.operations.snapshot import (
    INSTANCE,
    INSTANCE_DUMP,
    SALT,
    WAREHOUSE,
    instance_database,
    open_instance,
    run_pg_tool,
)
from data_platform.operations.spark_snapshot import load_spark_warehouse
from data_platform.operations.staging import held_owners, open_staging
from data_platform.resources.duckdb_lock import is_lock_conflict
from data_platform.resources.privacy import SALT_FILE, SALT_VARIABLE
from data_platform.resources.warehouse import warehouse_of
from data_platform.services.process import create_once_leftover
from data_platform.settings import Settings, unwritable_reason


def read_manifest(src: BackupStore, staging: Path) -> dict:
    if MANIFEST not in src.names():
        raise BackupError(
            f"{src.url} has no {MANIFEST}: not a complete backup (interrupted?); use another one"
        )
    src.get(MANIFEST, staging / MANIFEST)
    try:
        manifest = json.loads((staging / MANIFEST).read_text())
    except ValueError:
        raise BackupError(
            f"{src.url}/{MANIFEST} is cut short or not a manifest: use another backup"
        ) from None
    check_manifest(manifest, f"{src.url}/{MANIFEST}")
    return manifest


def check_manifest(manifest: object, where: str) -> None:
    """A manifest of another shape (hand-edited, another tool's) is refused in one line, not a
    KeyError; one of another format is refused before its fields are read as this one's."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("format"), int):
        raise BackupError(
            f"{where} is not a backup's manifest (format missing or wrong): {ANOTHER}"
        )
    if manifest["format"] != FORMAT:
        raise BackupError(
            f"{where} is of format {manifest['format']}; this version reads format {FORMAT}: "
            "restore it with the version that took it"
        )
    for field, valid in MANIFEST_FIELDS.items():
        if not valid(manifest.get(field)):
            raise BackupError(
                f"{where} is not a backup's manifest ({field} missing or wrong): {ANOTHER}"
            )


def _is_staged_name(name: object) -> bool:
    """A relative path inside the backup: a `..` or absolute one would be downloaded outside
    the staging folder."""
    if not isinstance(name, str) or not name or name == MANIFEST:
        return False
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts


def _are_files(files: object) -> bool:
    return isinstance(files, list) and all(
        isinstance(entry, dict)
        and _is_staged_name(entry.get("path"))
        and isinstance(entry.get("sha256"), str)
        for entry in files
    )


ANOTHER = "use another backup"
MANIFEST_FIELDS: dict[str, Callable[[object], bool]] = {
    "files": _are_files,
    "created_at": lambda value: isinstance(value, str),
    "instance_storage": lambda value: value in ("sqlite", "postgres"),
    "versions": lambda value: isinstance(value, dict),
}


def fetch_verified(src: BackupStore, staging: Path, manifest: dict) -> None:
    """Download every file of the manifest into staging and check it."""
    present = set(src.names())
    for entry in manifest["files"]:
        name = entry["path"]
        if name not in present:
            raise BackupError(f"{src.url} lacks {name}, listed in its manifest: use another backup")
        src.get(name, staging / name)
        if sha256_file(staging / name) != entry["sha256"]:
            raise BackupError(
                f"{src.url}/{name} does not match its checksum in the manifest (corrupt): "
                "use another backup"
            )


def state_held(settings: Settings) -> Path | None:
    """Where the settings hold a warehouse or instance files a restore would replace (the
    warehouse file, or DAGSTER_HOME, which may lie outside the home); None when nowhere. The
    salt alone is not state: `make -s services-env` makes one in a new home (the shared
    instance needs it exported), and a restore into a home set up the documented way was
    refused; no row was hashed with it. A PostgreSQL instance and Spark tables are checked
    where they are replaced (`check_postgres_target`, `load_spark_warehouse`)."""
    if settings.warehouse.exists():
        return settings.warehouse
    dagster_files = (
        [p for p in settings.dagster_home.rglob("*") if p.is_file() and not _instance_yaml(p)]
        if settings.dagster_home.exists()
        else []
    )
    return settings.dagster_home if dagster_files else None


def _instance_yaml(path: Path) -> bool:
    """dagster.yaml, or the temp file of one that `create_once` was writing when killed."""
    return path.name == "dagster.yaml" or create_once_leftover(path, "dagster.yaml")


def stale_salt_line(settings: Settings, environ: Mapping[str, str]) -> str | None:
    """A warning when this shell's DATA_PLATFORM_PII_SALT is not the restored home's salt: it
    wins over the file, so new rows would be hashed otherwise than the restored ones (and no
    join on a hashed e-mail would meet). `make -s services-env` exported the old home's."""
    exported = environ.get(SALT_VARIABLE, "").strip()
    path = settings.home / SALT_FILE
    if not exported or not path.exists() or path.read_text().strip() == exported:
        return None
    return (
        f"warning: this shell's {SALT_VARIABLE} is not the restored salt ({path}): new rows "
        f"would be hashed with another salt than the restored ones; unset {SALT_VARIABLE}, or "
        'open a new shell and eval "$(make -s services-env)" there, before anything else'
    )


def replacements(settings: Settings, staging: Path, manifest: dict) -> list[Replacement]:
    """The home's parts the backup replaces. The instance before the warehouse: stopped in
    between (a server down while finishing), the home has the backup's cursors and a newer
    warehouse, and files the cursors have not seen are ingested again (a day's ingestion
    replaces it). The other order would leave cursors past files never loaded.

    A part the backup lacks is removed from the home (`staged` None): the old salt would hash
    new rows unlike the restored ones, an old warehouse would sit beside cursors that never saw
    its days. A backup of a Spark warehouse leaves the home's DuckDB file alone: it is not the
    warehouse that backup replaces."""
    parts = [Replacement(INSTANCE, str(settings.dagster_home))]
    salt = SALT if (staging / SALT).exists() else None
    parts.append(Replacement(salt, str(settings.home / SALT_FILE)))
    if manifest.get("warehouse") != "spark":
        warehouse = WAREHOUSE if (staging / WAREHOUSE).exists() else None
        wal = settings.warehouse.with_name(settings.warehouse.name + ".wal")
        parts.append(Replacement(warehouse, str(settings.warehouse), stale=(str(wal),)))
    return parts


def stage_missing_instance(staging: Path) -> None:
    """An empty instance folder staged when the backup holds none (a platform backed up before
    its first run: its salt alone). The journal's step for the instance, finding nothing staged,
    took it as in place already and kept the home's: runs and cursors that had seen days beside
    no warehouse (removed, the backup lacking it). Replaced by an empty folder, the instance
    starts new, as the backed-up platform's had not begun."""
    (staging / INSTANCE).mkdir(exist_ok=True)


def put_in_place(
    settings: Settings, staging: Path, manifest: dict, force: bool, label: str
) -> None:
    """The steps that can be refused come first: a SQLite instance's files checked to be in the
    DAGSTER_HOME they are restored into, the backup's Spark tables loaded beside the cluster's,
    the PostgreSQL database checked. From the journal on, whoever finds it finishes the restore
    if this process dies; the PostgreSQL instance is the journal's first step, since pg_restore
    commits the backup's runs and cursors, which are only right beside the backup's warehouse
    and salt."""
    if manifest["instance_storage"] == "sqlite":
        check_sqlite_inside(
            staging / INSTANCE,
            settings.dagster_home,
            "this backup's dagster.yaml",
            "restored here, the instance would read that folder instead of the backup's copy; "
            "restore it into the DAGSTER_HOME it was taken from",
        )
    spark_existing = None
    if manifest.get("warehouse") != "spark" and settings.engine == "spark":
        # Restored, it replaced the home's DuckDB file, which is not the warehouse this home
        # uses, unchecked for a writer (check_stopped looks at the engine's warehouse).
        raise BackupError(
            "this backup's warehouse is a DuckDB file, and DATA_PLATFORM_ENGINE=spark: restore "
            "it with DATA_PLATFORM_ENGINE unset (or duckdb)"
        )
    if manifest.get("warehouse") == "spark":
        if settings.engine != "spark":
            raise BackupError(
                "this backup's warehouse is on Spark: restore it with DATA_PLATFORM_ENGINE=spark "
                "and DATA_PLATFORM_SPARK_REMOTE naming the cluster to restore it into"
            )
        with warehouse_of(settings).spark() as spark:
            spark_existing = load_spark_warehouse(spark, staging, force)
    postgres_dump = None
    if manifest["instance_storage"] == "postgres":
        check_postgres_target(settings, staging, force)
        postgres_dump = INSTANCE_DUMP
    if force:
        # Again at the point of no return: a writer or a run started since the first check
        # (during the download, the Spark load) would see its files renamed under it.
        check_stopped(settings)
    else:
        # Again too: a platform started in the empty home during the download (make run, a
        # materialize) had its runs replaced without --force, and a run still going failed
        # ("no such table"), as did the restore, half way ("Directory not empty").
        check_no_state(settings)
    check_no_backup(settings)
    stage_missing_instance(staging)
    parts = replacements(settings, staging, manifest)
    restore_journal.begin(
        staging, label, settings.dagster_home, parts, spark_existing, postgres_dump
    )
    try:
        restore_journal.load_postgres_step(staging)
    except BackupError:
        # pg_restore is one transaction: failed, it changed nothing, and nothing else was
        # changed before it. The home is as it was: no restore is left to finish.
        restore_journal.abandon(staging)
        raise
    restore_journal.complete(staging, settings)


def check_no_backup(settings: Settings) -> None:
    """Refuse, at the point of no return, while a backup of this home runs (its staging folder
    locked): it copies the instance's databases one by one, then the warehouse, and with the
    home replaced between two copies it sealed a verified backup of two platforms (the old
    runs and cursors beside the restored warehouse and salt)."""
    if backups := held_owners(settings.home, "backup"):
        raise BackupError(
            f"a backup of {settings.home} is running ({'; '.join(backups)}): let it end, "
            "then restore"
        )


def check_postgres_target(settings: Settings, staging: Path, force: bool) -> None:
    """Refuse, before anything changes, a target that is not PostgreSQL, that spreads the
    instance's storages over several databases (pg_restore loads one), or whose database holds
    runs without --force; leaves the staged instance's dagster.yaml naming that database.

    That file is the home's own when it has one (it says where this platform's database is),
    else the backed-up one, whose connection settings are `env:` references (instance.py): the
    environment of the restore chooses the database either way.
    """
    config = settings.dagster_home / "dagster.yaml"
    if config.exists():
        shutil.copy2(config, staging / INSTANCE / "dagster.yaml")
    if instance_storage(staging / INSTANCE) != "postgres":
        raise BackupError(
            f"this backup's Dagster instance is on PostgreSQL and {config} is not: point it "
            "at a PostgreSQL database (or remove it to use the backed-up one)"
        )
    with open_instance(staging / INSTANCE, config) as instance:
        instance_database(instance, config)
        runs = instance.get_runs_count()
        if runs and not force:
            raise BackupError(
                f"the PostgreSQL database of {config} already holds {runs} runs: restore into "
                "an empty database, or add --force to replace them"
            )


def load_postgres_dump(staging: Path, dump: Path, config: Path) -> None:
    """`dump` loaded into the database the staged dagster.yaml names (check_postgres_target).

    pg_restore runs as one transaction with --clean --if-exists, so it replaces the tables of a
    database that already holds an instance's (Dagster creates them at its first connection,
    this one's included), on any error leaves that database as it was, and can run again: a
    step of the restore journal. The URL is read from the environment each time, never stored
    in the journal (it holds the password). `config`: the home's dagster.yaml, which the
    staged one becomes, named in what goes wrong (the staged one is gone once done).
    """
    with open_instance(staging / INSTANCE, config) as instance:
        url = instance_database(instance, config)
    run_pg_tool(
        "pg_restore",
        url,
        "--single-transaction",
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-privileges",
        str(dump),
    )


def check_same_storage(settings: Settings, manifest: dict) -> None:
    """A SQLite instance's backup replaces the instance folder whole, dagster.yaml included: in
    a home on PostgreSQL it silently moved the platform onto SQLite files its workers elsewhere
    never see, and left the database as it was. There is no converting one into the other."""
    home = instance_storage(settings.dagster_home)
    if manifest["instance_storage"] == "sqlite" and home == "postgres":
        raise BackupError(
            f"this backup's Dagster instance is on SQLite and "
            f"{settings.dagster_home / 'dagster.yaml'} puts this home's on PostgreSQL: restore "
            "it into a home whose instance is on SQLite (DAGSTER_HOME unset, or pointing at a "
            "folder without PostgreSQL storage)"
        )


def check_targets_writable(settings: Settings, manifest: dict) -> None:
    """Refuse, before anything changes, a part whose place cannot be written: a warehouse
    under a file (DATA_PLATFORM_WAREHOUSE=file/x.duckdb) or in a folder this user may not
    write. Found while putting it in place, after the journal, it left the backup's instance
    beside the old warehouse, and every command after failed finishing the restore, for good:
    the journal names the place, so correcting the setting did not help."""
    targets = [settings.dagster_home, settings.home / SALT_FILE]
    if manifest.get("warehouse") != "spark":
        targets.append(settings.warehouse)
    for target in (t.absolute() for t in targets):
        if why := unwritable_reason(target):
            raise BackupError(
                f"{target} cannot be written ({why}): correct the setting that puts it there, "
                "or make that folder one this user can write; nothing was changed"
            )


def check_stopped(settings: Settings) -> None:
    """A forced restore renames the warehouse and the instance under whoever has them open: a
    writer's later commit left a warehouse.duckdb.wal that made every open fail after. So the
    platform must be stopped: no writer holds the warehouse's lock, no run's process is alive.
    Checked once the backup is verified, and again right before the journal (the point of no
    return): a writer started in between was not noticed. One that starts after that is not
    (the journal's steps follow at once)."""
    if settings.engine == "duckdb" and settings.warehouse.exists():
        try:
            duckdb.connect(str(settings.warehouse), read_only=True).close()
        except duckdb.Error as error:
            if is_lock_conflict(error):
                raise BackupError(
                    f"the warehouse {settings.warehouse} is open in a running process "
                    f"({' '.join(str(error).split())}): stop the platform (make run, dagster "
                    "dev, data-platform materialize, notebooks), then restore"
                ) from None
            # A damaged warehouse is what a restore is for: not a reason to refuse one.
    running = running_runs(settings)
    if running:
        raise BackupError(
            f"the Dagster instance of {settings.home} is in use ({'; '.join(running)}): "
            "stop the platform and let its runs end (or cancel them), then restore"
        )


def running_runs(settings: Settings) -> list[str]:
    """What is at work on the instance, as `<what>: <why>`: each unfinished run whose process is
    known to be alive, each run a live `materialize` made and is starting, and a dagster-daemon
    that beat lately. A forced restore under the last two began replacing the instance while
    they wrote it, and failed halfway ("Directory not empty"), as did they ("no such table").
    A run whose process died with a platform killed is no reason to wait: the restore replaces
    it. Nor is one with no evidence either way (no process announced, or of another host that
    never beat): with the platform stopped nothing would ever end it, and the restore was
    refused for good."""
    from data_platform.orchestration.run_health import (
        UNENDED,
        check_worker,
        proven_alive,
        runs_being_started,
    )

    if not any(p.is_file() for p in settings.dagster_home.rglob("*")):
        return []  # nothing to open, and opening would create an instance
    with open_instance(settings.dagster_home) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(statuses=list(UNENDED)))
        health = {run.run_id: check_worker(instance, run) for run in runs}
        starting = runs_being_started(instance)
        daemon = daemon_at_work(instance)
    alive = [f"{run_id}: {result.msg}" for run_id, result in health.items() if proven_alive(result)]
    return alive + starting + ([daemon] if daemon else [])


# The daemon beats every 30 s (Dagster's default); silent for two beats and more, it is stopped.
DAEMON_SILENT_SECONDS = 75.0


def daemon_at_work(instance: dg.DagsterInstance) -> str | None:
    """Why the instance's dagster-daemon (`make run`, `dagster dev`) counts as running, or None.
    It launches queued runs and ticks sensors at any moment: no check of its runs covers it.
    Stopped, it leaves its last beat, counted for DAEMON_SILENT_SECONDS more."""
    beats = instance.get_daemon_heartbeats().values()
    if not beats:
        return None
    age = time.time() - max(beat.timestamp for beat in beats)
    if age >= DAEMON_SILENT_SECONDS:
        return None
    return (
        f"dagster-daemon: beat {max(age, 0):.0f} s ago (make run, dagster dev; once stopped, "
        f"it counts for {DAEMON_SILENT_SECONDS:.0f} s after its last beat)"
    )


def check_no_state(settings: Settings) -> None:
    """Refuse a home that holds state (`state_held`), for a restore without --force."""
    held = state_held(settings)
    if held is not None:
        # Named where it lies: a DAGSTER_HOME left set for another home held it, and the line
        # named the empty DATA_PLATFORM_HOME.
        raise BackupError(
            f"{held} already holds a platform's state: restore into an empty "
            "DATA_PLATFORM_HOME (and DAGSTER_HOME), or add --force to replace it"
        )


def restore(settings: Settings, src: BackupStore, force: bool = False) -> dict:
    if not force:
        check_no_state(settings)
    made_home = not settings.home.exists()
    try:
        return _restore(settings, src, force)
    except BaseException:
        if made_home:  # a refused restore leaves no empty home behind, as it found none
            with contextlib.suppress(OSError):
                settings.home.rmdir()
        raise


def _restore(settings: Settings, src: BackupStore, force: bool) -> dict:
    with open_staging(settings.home, "restore") as staging:
        manifest = read_manifest(src, staging)
        check_same_storage(settings, manifest)  # before a warehouse's GBs are downloaded
        check_targets_writable(settings, manifest)
        fetch_verified(src, staging, manifest)
        # After the checksums: a refused backup leaves the home byte for byte as it was, and
        # opening its instance to look at its runs rewrites SQLite's side files.
        if force:
            check_stopped(settings)
        put_in_place(
            settings, staging, manifest, force, f"{src.url} (taken {manifest['created_at']})"
        )
    return manifest


def run_restore(settings: Settings, src_url: str, force: bool, finished: Sequence[str] = ()) -> int:
    """`finished`: the labels of the interrupted restores finished before this command. When
    one is of `src_url`, this very restore was killed while putting its backup in place and is
    done: run again, it refused the home that restore had filled ("already holds a platform's
    state"), exit 1, and with --force it downloaded and replaced everything a second time."""
    store = BackupStore(src_url)
    if done := [label for label in finished if label.startswith(f"{store.url} (taken ")]:
        print(f"restored {done[-1]} into {settings.home}", file=sys.stderr)
    else:
        manifest = restore(settings, store, force)
        if manifest["versions"] != versions():
            print(
                f"note: backed up with {manifest['versions']}, restored with {versions()}",
                file=sys.stderr,
            )
        print(
            f"restored {src_url} (taken {manifest['created_at']}) into {settings.home}",
            file=sys.stderr,
        )
    if line := stale_salt_line(settings, os.environ):
        print(line, file=sys.stderr)
    return 0
