"""Every service by name, in start order; `SERVICES="postgres redis"` picks a subset.

`kafka` (the event stream's local broker) and `spark` (a standalone Spark cluster, the
warehouse of DATA_PLATFORM_ENGINE=spark) are started only when named (`SERVICES=kafka`,
`SERVICES=spark`): the distributed instance needs neither, and each costs memory (Spark ~1.2-1.4 GB).
`down` with no SERVICES stops them too.

`env` (`make -s services-env`) exports the variables of what runs, not of what a selection
names: after `SERVICES="postgres redis" make services-up` it does not send steps to Celery
workers that do not exist (they would wait forever), a Kafka broker alone needs no PostgreSQL
password, and the Spark engine is exported while its cluster runs. A service half running (a
worker or a Spark process exited) is one line on stderr, and its variables are left out.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from data_platform.resources.privacy import SALT_FILE, SALT_VARIABLE, local_pii_salt
from data_platform.services.base import Service
from data_platform.services.celery_workers import EXECUTOR_ENV, CeleryWorkers
from data_platform.services.config import ServicesConfig
from data_platform.services.instance import instance_home
from data_platform.services.kafka_broker import KafkaBroker
from data_platform.services.postgres import Postgres
from data_platform.services.process import ServiceError
from data_platform.services.redis_server import Redis
from data_platform.services.spark_cluster import SparkCluster
from data_platform.settings import SettingsError

# The workers last: they are handed the variables of the services running when they start
# (`worker_env`), the Spark engine's among them; started before the cluster, they ran a Spark
# run's steps on the embedded DuckDB file.
SERVICE_NAMES = ("postgres", "redis", "kafka", "spark", "celery")
# By name, for what a class declares (its apt packages) before any config exists.
SERVICE_CLASSES: dict[str, type[Service]] = {
    "postgres": Postgres,
    "redis": Redis,
    "celery": CeleryWorkers,
    "kafka": KafkaBroker,
    "spark": SparkCluster,
}
DEFAULT_SERVICES = ("postgres", "redis", "celery")
OPT_IN_SERVICES = ("kafka", "spark")


def parse_selection(raw: str | None) -> list[str]:
    """Names from a space- or comma-separated list, in start order; empty means all."""
    names = [n for n in (raw or "").replace(",", " ").split() if n]
    unknown = sorted(set(names) - set(SERVICE_NAMES))
    if unknown:
        raise SettingsError(
            f"SERVICES={raw!r} names unknown service(s) {', '.join(unknown)}: "
            f"choose among {' '.join(SERVICE_NAMES)}"
        )
    return [n for n in SERVICE_NAMES if n in names] if names else list(DEFAULT_SERVICES)


def service_env(config: ServicesConfig, names: Sequence[str]) -> dict[str, str]:
    """The variables that point the CLI, the UI and tests at the named services."""
    env = {"DATA_PLATFORM_HOME": str(config.platform_home)}
    if "postgres" in names:
        env["DAGSTER_HOME"] = str(instance_home(config))
        env.update(Postgres(config).env())
        # The instance is shared now, which refuses a salt file (resources/privacy.py): this
        # stack is one machine, so its home's salt is every process's, exported like the
        # password. A stack spread over machines sets DATA_PLATFORM_PII_SALT on each itself.
        if not config.environ.get(SALT_VARIABLE, "").strip():
            env[SALT_VARIABLE] = local_pii_salt(config.platform_home / SALT_FILE)
    if "redis" in names:
        env.update(Redis(config).env())
    if "celery" in names:
        env.update(EXECUTOR_ENV)
    broker = KafkaBroker(config)
    if "kafka" in names or broker.is_running():
        env.update(broker.env())
    cluster = SparkCluster(config)
    if "spark" in names or cluster.is_running():
        env.update(cluster.env())
    return env


def running_env(
    config: ServicesConfig, candidates: Sequence[str]
) -> tuple[dict[str, str], list[str]]:
    """The variables of the candidate services that run, and one line for each one half
    running; ServiceError when none of them runs at all."""
    workers = CeleryWorkers(config, dict)
    cluster = SparkCluster(config)
    whole = {
        "postgres": Postgres(config).is_running,
        "redis": Redis(config).is_running,
        "celery": workers.is_running,
        "kafka": KafkaBroker(config).is_running,
        "spark": cluster.is_running,
    }
    partly = {"celery": workers.has_processes, "spark": cluster.has_processes}
    restart = {"celery": "make services-up", "spark": "SERVICES=spark make services-up"}
    # Workers whose broker or instance is down take no step: exported, every run waited.
    needs = {"celery": ("postgres", "redis")}
    running, warnings = [], []
    for name in candidates:
        if whole[name]():
            if missing := [other for other in needs.get(name, ()) if not whole[other]()]:
                warnings.append(
                    f"{name} runs but {' and '.join(missing)} does not, so its variables are "
                    f"not exported: run `{restart[name]}`"
                )
                continue
            running.append(name)
        elif name in partly and partly[name]():
            warnings.append(
                f"{name} is half running (some of its processes exited), so its variables are "
                f"not exported: run `{restart[name]}`, which starts again what exited"
            )
    if not running and not warnings:
        raise ServiceError(
            f"no service runs in {config.root}: run `make services-up` first "
            "(SERVICES=kafka or SERVICES=spark for those)"
        )
    return service_env(config, running), warnings


def running_opt_in(config: ServicesConfig) -> list[str]:
    """The opt-in services whose processes run: `down` without SERVICES stops them as well."""
    running = {
        "kafka": KafkaBroker(config).is_running,
        "spark": SparkCluster(config).has_processes,  # also a cluster left half-running
    }
    return [name for name in OPT_IN_SERVICES if running[name]()]


def worker_env(config: ServicesConfig) -> dict[str, str]:
    """Workers run in the caller's environment plus the whole local stack's variables, which
    override it: under make, DAGSTER_HOME otherwise names the embedded instance."""
    return {**config.environ, **service_env(config, DEFAULT_SERVICES)}


def build_services(config: ServicesConfig, names: Sequence[str]) -> list[Service]:
    factories = {
        "postgres": lambda: Postgres(config),
        "redis": lambda: Redis(config),
        "celery": lambda: CeleryWorkers(config, functools.partial(worker_env, config)),
        "kafka": lambda: KafkaBroker(config),
        "spark": lambda: SparkCluster(config),
    }
    return [factories[name]() for name in names]
