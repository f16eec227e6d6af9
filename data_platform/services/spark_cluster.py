"""A real Spark standalone cluster from the pyspark wheel: a master, one worker, one SQL endpoint.

The wheel ships `bin/spark-class`, `bin/spark-submit` and every jar needed (the standalone
daemons, Spark Connect, the Hive metastore client with an embedded Derby); only Java comes from
apt. Java 17 is chosen explicitly (`java_home`): Spark 4 supports 17 and 21, and a newer JDK
first on PATH (a Temurin 25 here) is not one to run it on.

The SQL endpoint is a **Spark Connect server** (gRPC, `sc://localhost:15002`), not the Hive
Thrift server. Both were tried on this cluster (pyspark 4.3.0, dbt-spark 1.11.0):
- dbt-spark reaches both: `method: thrift` through PyHive, and `method: session` once
  pyspark's builder is pointed at Connect (SPARK_REMOTE, or `spark.remote` in the profile's
  `server_side_parameters`), when `getOrCreate()` returns a Connect session. Table and
  insert_overwrite incremental models built on both; the session method warns, harmlessly, that
  `enableHiveSupport()` cannot change a static config of the running (already Hive) server.
- Python code: over Thrift it gets SQL alone, rows as tuples through PyHive; over Connect it gets
  SQL *and* the DataFrame API with Arrow transfer: `spark.read.json(path, mode=PERMISSIVE,
  columnNameOfCorruptRecord=...)`, `createDataFrame` of rows extracted from the app database,
  writes into tables. Ingestion needs the second. One endpoint then serves dbt, ingestion, the
  checks and `data-platform sql`, with no PyHive/SASL dependency.
The endpoint is a Spark application of this cluster (its queries run on the worker's executor),
and it is the one process that opens the metastore: embedded Derby admits a single process,
so every client (dbt included) goes through it, never a local SparkSession of its own.

Ports are fixed (overridable, so tests run clusters side by side) and every listener is bound to
127.0.0.1; `spark.port.maxRetries=0` makes a taken port a failure to start, not a silent move to
the next port that `env` would not name. State lives under `services/spark/`: `warehouse/`
(table files), `metastore_db/`, `work/` (the worker's executor folders), `local/` (shuffle and
spill), `tmp/` (each JVM's `java.io.tmpdir`), `logs/` and the pid files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from data_platform.services.base import HOST, AptPackage, refuse_taken_ports
from data_platform.services.config import ServicesConfig, _positive_int
from data_platform.services.process import (
    ServiceError,
    ensure_secret,
    read_pid,
    read_secret,
    spawn,
    terminate_group,
    wait_until,
    write_atomically,
    write_secret,
)
from data_platform.settings import ENGINE_VARIABLE, OWNER_ONLY_UMASK, SPARK_REMOTE_VARIABLE

CONNECT_PORT_VARIABLE = "DATA_PLATFORM_SPARK_CONNECT_PORT"
MASTER_PORT_VARIABLE = "DATA_PLATFORM_SPARK_MASTER_PORT"
MASTER_UI_PORT_VARIABLE = "DATA_PLATFORM_SPARK_MASTER_UI_PORT"
WORKER_UI_PORT_VARIABLE = "DATA_PLATFORM_SPARK_WORKER_UI_PORT"
DEFAULT_CONNECT_PORT = 15002  # Spark Connect's own default
DEFAULT_MASTER_PORT = 17077
DEFAULT_MASTER_UI_PORT = 18080
DEFAULT_WORKER_UI_PORT = 18081
# The application name the endpoint registers at the master: `is_up` looks for it there.
APP_NAME = "data-platform-sql"

# Modest sizes for a 2-core shared machine: the daemons only coordinate (256 MB heap each); the
# worker offers both cores and 1 GB, and the endpoint's one executor takes the cores and 768 MB.
DAEMON_MEMORY = "256m"
WORKER_CORES = 2
WORKER_MEMORY = "1g"
DRIVER_MEMORY = "768m"
EXECUTOR_MEMORY = "768m"
# The stack of every thread of the endpoint and its executors. Spark's VARIANT functions recurse
# once per level of a JSON value (`schema_of_variant`, which the ingestion's diagnosis runs on
# each top-level value): with Java's default 1 MB an object nested ~740 deep, still within
# MAX_DEPTH (900), threw StackOverflowError and killed the executor, failing the day on every
# re-run. 8 MB is ~6 times what Jackson's own limit (1,000 levels) needs; reserved, not used.
TASK_THREAD_STACK = "-Xss8m"
# Long enough for the master to come up on a busy 2-core machine (15 s measured at load 3-4).
MASTER_TIMEOUT_SECONDS = 60.0
# Then the worker, the endpoint and its metastore: `up` took 90-135 s in all at load 7-10.
START_TIMEOUT_SECONDS = 240.0
SUPPORTED_JAVA = ("17", "21")
# The three processes, in start order: each has a pid file and a log.
PROCESSES = ("master", "worker", "connect")
# The ports each of them binds.
PROCESS_PORTS = {
    "master": (MASTER_PORT_VARIABLE, MASTER_UI_PORT_VARIABLE),
    "worker": (WORKER_UI_PORT_VARIABLE,),
    "connect": (CONNECT_PORT_VARIABLE,),
}
# Spark's own default is INFO: ~10 KB per statement in the endpoint's log and ~4 KB in its
# executor's stderr (measured), for good. WARN keeps warnings and errors; the daemons'
# `org.apache.spark.deploy` lines stay at INFO: a few per start (registrations, executors
# launched and lost), what tells why the cluster did not come up. HiveConf warns of an unknown
# setting of Spark's own at every statement (112 B each, measured): its errors only. Spark's
# own pattern.
LOG4J2_PROPERTIES = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.deploy.name = org.apache.spark.deploy
logger.deploy.level = info
logger.hiveconf.name = org.apache.hadoop.hive.conf.HiveConf
logger.hiveconf.level = error
"""
# The worker removes the folder (`work/app-*`: the executor's stderr, its files) of an
# application stopped this long ago; every endpoint start is a new application, which left one.
# Three days: a failure on a Friday can still be read on Monday.
WORKER_CLEANUP_OPTS = (
    "-Dspark.worker.cleanup.enabled=true -Dspark.worker.cleanup.interval=3600 "
    f"-Dspark.worker.cleanup.appDataTtl={3 * 24 * 3600}"
)


def spark_home() -> Path:
    """The pyspark wheel's folder, laid out as a Spark distribution (bin/, jars/)."""
    import pyspark

    return Path(pyspark.__file__).parent


def _java_major(home: Path) -> str | None:
    """The major version a JDK/JRE folder declares in its `release` file, if it has one."""
    try:
        text = (home / "release").read_text()
    except OSError:
        return None
    found = re.search(r'^JAVA_VERSION="(\d+)', text, re.MULTILINE)
    return found.group(1) if found else None


def java_home(environ: dict[str, str] | None = None) -> Path:
    """A Java 17 (or 21) to run Spark on: JAVA_HOME when it is one, else apt's openjdk-17.

    Not simply the `java` on PATH: another JDK may come first there, and Spark 4 is built and
    tested on 17 and 21 only.
    """
    env = os.environ if environ is None else environ
    candidates = [Path(env["JAVA_HOME"])] if env.get("JAVA_HOME") else []
    for major in SUPPORTED_JAVA:
        candidates += sorted(Path("/usr/lib/jvm").glob(f"java-{major}-openjdk-*"))
    for home in candidates:
        if _java_major(home) in SUPPORTED_JAVA and os.access(home / "bin" / "java", os.X_OK):
            return home
    raise ServiceError(
        "spark: no Java 17 found (JAVA_HOME or /usr/lib/jvm/java-17-openjdk-*): install the apt "
        "package openjdk-17-jre-headless (make services-up does)"
    )


def _get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)
    except (OSError, urllib.error.URLError, ValueError):
        return None


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class SparkCluster:
    config: ServicesConfig
    name: str = "spark"
    # Spark itself is the pyspark wheel; a Java 17 or 21 found elsewhere (JAVA_HOME) will do.
    apt_packages: ClassVar[tuple[AptPackage, ...]] = (
        AptPackage("openjdk-17-jre-headless", java_home),
    )
    start_timeout: float = START_TIMEOUT_SECONDS  # read by `base.start`

    @property
    def folder(self) -> Path:
        return self.config.state_dir(self.name)

    def _port(self, variable: str, default: int) -> int:
        return _positive_int(self.config.environ, variable, default, 65535)

    @property
    def connect_port(self) -> int:
        return self._port(CONNECT_PORT_VARIABLE, DEFAULT_CONNECT_PORT)

    @property
    def master_port(self) -> int:
        return self._port(MASTER_PORT_VARIABLE, DEFAULT_MASTER_PORT)

    @property
    def master_ui_port(self) -> int:
        return self._port(MASTER_UI_PORT_VARIABLE, DEFAULT_MASTER_UI_PORT)

    @property
    def worker_ui_port(self) -> int:
        return self._port(WORKER_UI_PORT_VARIABLE, DEFAULT_WORKER_UI_PORT)

    @property
    def ports(self) -> dict[str, int]:
        return {
            CONNECT_PORT_VARIABLE: self.connect_port,
            MASTER_PORT_VARIABLE: self.master_port,
            MASTER_UI_PORT_VARIABLE: self.master_ui_port,
            WORKER_UI_PORT_VARIABLE: self.worker_ui_port,
        }

    def ports_of_exited(self) -> dict[str, int]:
        """The ports of its processes that are not alive, which `base.refuse_taken_ports` checks:
        a live one's own ports answer too, and with the worker's UI port taken by another
        program the line named the master's port, which the master held, and its setting."""
        ports = self.ports
        return {
            variable: ports[variable]
            for process, variables in PROCESS_PORTS.items()
            if not self._alive(process)
            for variable in variables
        }

    @property
    def secret_file(self) -> Path:
        return self.folder / "secret"

    @property
    def secret(self) -> str:
        """The cluster's shared secret, as generated at its first start (token_urlsafe: no `=`,
        which pyspark's URL parameters cannot hold)."""
        self._refuse_unsecured_processes()
        return read_secret(self.secret_file, self.name)

    def _refuse_unsecured_processes(self) -> None:
        """One line when processes run without a secret file: started by a version before the
        secret (they take any local user), or the file deleted under them. A new secret would
        not be theirs (an endpoint started with it could not join that master), so they must
        stop first."""
        if not self.secret_file.exists() and self.has_processes():
            raise ServiceError(
                f"spark: the cluster runs without its secret ({self.secret_file} is missing: "
                "started by an older version, or the file was deleted), so it takes any local "
                "user: run `make services-down`, then `SERVICES=spark make services-up`"
            )

    @property
    def remote(self) -> str:
        """The Spark Connect URL clients use (pyspark's `SparkSession.builder.remote`), the
        secret as its token. `localhost`, not 127.0.0.1: pyspark sends a token without TLS only
        to that name (gRPC's local credentials, which also refuse a peer off this machine); it
        resolves to the 127.0.0.1 the endpoint listens on."""
        return f"sc://localhost:{self.connect_port}/;token={self.secret}"

    @property
    def master_url(self) -> str:
        return f"spark://{HOST}:{self.master_port}"

    @property
    def warehouse(self) -> Path:
        return self.folder / "warehouse"

    def _pid_file(self, process: str) -> Path:
        return self.folder / f"{process}.pid"

    def _log(self, process: str) -> Path:
        return self.folder / "logs" / f"{process}.log"

    @property
    def log_files(self) -> tuple[Path, ...]:
        """Every process's log, which `base.start` caps."""
        return tuple(self._log(process) for process in PROCESSES)

    @property
    def log_file(self) -> Path:
        """The log of the first process that died (what to read when it does not come up)."""
        for process in PROCESSES:
            if read_pid(self._pid_file(process)) is None:
                return self._log(process)
        return self._log("connect")

    def master_status(self) -> dict[str, Any] | None:
        """The master's JSON status (workers, applications), or None when it does not answer."""
        return _get_json(f"http://{HOST}:{self.master_ui_port}/json/")

    def worker_status(self) -> dict[str, Any] | None:
        """The worker's JSON status (its executors), or None when it does not answer."""
        return _get_json(f"http://{HOST}:{self.worker_ui_port}/json/")

    def _environment(self) -> dict[str, str]:
        home = java_home(dict(self.config.environ))
        # maxRetries=0: a taken port fails the daemon instead of moving it to port + 1. The
        # master, the worker and spark-class's launcher only coordinate: the client compiler
        # and the serial collector spend less CPU starting them on a busy 2-core machine.
        light_jvm = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
        # killEnabled=false: the UIs answer any local user, who could otherwise end the endpoint.
        daemon_opts = f"-Dspark.port.maxRetries=0 -Dspark.ui.killEnabled=false {light_jvm}"
        master, worker = self._tmpdir_option("master"), self._tmpdir_option("worker")
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))},
            "JAVA_HOME": str(home),
            "PATH": f"{home / 'bin'}:{os.environ.get('PATH', '')}",
            "SPARK_HOME": str(spark_home()),
            # Only what `launch` writes (spark-defaults.conf, log4j2.properties); on every
            # JVM's class path, the executor's too.
            "SPARK_CONF_DIR": str(self.folder / "conf"),
            "SPARK_LOCAL_IP": HOST,  # the bind address of every daemon, UI and executor
            "SPARK_LOCAL_DIRS": str(self.folder / "local"),
            "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
            "SPARK_MASTER_OPTS": f"{daemon_opts} {master} -Dspark.master.rest.enabled=false",
            "SPARK_WORKER_OPTS": f"{daemon_opts} {worker} {WORKER_CLEANUP_OPTS}",
            "SPARK_LAUNCHER_OPTS": f"{light_jvm} {self._tmpdir_option('launcher')}",
        }

    def _write_defaults(self) -> None:
        """`spark-defaults.conf`, which the master, the worker and the endpoint's spark-submit
        all read: authentication on, with the shared secret. Without it any user of the machine
        could register an application at the master and run code on the worker as the
        platform's user, or take the endpoint's executors. A file (mode 0600), never a command
        line, where `ps` shows it to every user; the worker hands the secret to the executors
        it starts in their environment (Spark's own `_SPARK_AUTH_SECRET`)."""
        write_secret(
            self.folder / "conf" / "spark-defaults.conf",
            f"spark.authenticate true\nspark.authenticate.secret {self.secret}",
        )

    def _tmp(self, jvm: str) -> Path:
        return self.folder / "tmp" / jvm

    def _tmpdir_option(self, jvm: str) -> str:
        """Each JVM's temporary folder in the services folder, never /tmp: the endpoint's driver
        makes `spark-*` and `artifacts-*` folders there per start, Hive a `*_resources` one per
        session, lz4-java a native library per JVM; a process ended by a signal or kill -9
        leaves them all, and a test run of the suite had left a thousand in /tmp. Here they
        are the cluster's state, removed when the JVM starts again (`launch`)."""
        return f"-Djava.io.tmpdir={self._tmp(jvm)}"

    def _command(self, process: str) -> list[str]:
        bin_dir = spark_home() / "bin"
        if process == "master":
            return [
                str(bin_dir / "spark-class"),
                "org.apache.spark.deploy.master.Master",
                *("--host", HOST, "--port", str(self.master_port)),
                *("--webui-port", str(self.master_ui_port)),
            ]
        if process == "worker":
            return [
                str(bin_dir / "spark-class"),
                "org.apache.spark.deploy.worker.Worker",
                *("--host", HOST, "--webui-port", str(self.worker_ui_port)),
                *("--cores", str(WORKER_CORES), "--memory", WORKER_MEMORY),
                *("--work-dir", str(self.folder / "work")),
                self.master_url,
            ]
        metastore = f"jdbc:derby:;databaseName={self.folder / 'metastore_db'};create=true"
        conf = {
            "spark.driver.host": HOST,
            "spark.driver.bindAddress": HOST,
            "spark.port.maxRetries": "0",
            "spark.connect.grpc.binding.address": HOST,
            "spark.connect.grpc.binding.port": str(self.connect_port),
            "spark.ui.enabled": "false",
            "spark.sql.catalogImplementation": "hive",
            "spark.sql.warehouse.dir": str(self.warehouse),
            # Session defaults every client starts from (each may set its own): raw timestamps
            # are naive UTC, and small data on 2 cores wants few shuffle partitions, not 200.
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.shuffle.partitions": "4",
            # Embedded Derby sometimes cannot filter partitions by a DATE key (its direct SQL
            # falls back to JDO): Spark then lists a table's partitions and filters them itself.
            "spark.sql.hive.metastorePartitionPruningFallbackOnException": "true",
            "spark.hadoop.javax.jdo.option.ConnectionURL": metastore,
            "spark.driver.extraJavaOptions": (
                f"-Dderby.system.home={self.folder} {self._tmpdir_option('connect')} "
                f"{TASK_THREAD_STACK}"
            ),
            "spark.executor.extraJavaOptions": (
                f"{self._tmpdir_option('executor')} {TASK_THREAD_STACK}"
            ),
            # The warehouse's files owner-only, as the DuckDB file is: they hold raw personal
            # data. Hadoop sets their mode itself (0644, 0755 by default), whatever the umask.
            "spark.hadoop.fs.permissions.umask-mode": f"{OWNER_ONLY_UMASK:03o}",
        }
        return [
            str(bin_dir / "spark-submit"),
            *("--class", "org.apache.spark.sql.connect.service.SparkConnectServer"),
            *("--name", APP_NAME, "--master", self.master_url),
            *("--driver-memory", DRIVER_MEMORY, "--executor-memory", EXECUTOR_MEMORY),
            *("--total-executor-cores", str(WORKER_CORES)),
            *[arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")],
        ]

    def launch(self) -> None:
        """Start what is not running; the worker and endpoint once the master answers."""
        env = self._environment()
        for folder in ("conf", "logs", "local", "work"):
            (self.folder / folder).mkdir(parents=True, exist_ok=True)
        # Owner-only, one made before this rule too: its tables hold raw personal data, and
        # Hive makes each database's folder with the mode of this one (0755 by default).
        self.warehouse.mkdir(exist_ok=True)
        self.warehouse.chmod(0o700)
        if not self._alive("master") and self.has_processes():
            # A master started again alone was joined by neither the endpoint (its application
            # gone with the old master) nor, in time, the worker: `up` waited its 240 s and
            # failed, every time. Without the master, all three start again.
            self.stop()
        self._refuse_unsecured_processes()
        ensure_secret(self.secret_file)
        self._write_defaults()
        write_atomically(self.folder / "conf" / "log4j2.properties", LOG4J2_PROPERTIES, 0o600)
        for process in PROCESSES:
            if self._alive(process):
                continue
            own_env = env
            if process == "connect":
                own_env = {
                    **env,
                    # It would also size the endpoint's driver (spark-submit treats the Connect
                    # server as a daemon): the daemons' heap alone.
                    "SPARK_DAEMON_MEMORY": "",
                    # The endpoint asks every client for the secret as its token (Spark
                    # Connect's own variable): SQL through it reads every table, runs Python.
                    "SPARK_CONNECT_AUTHENTICATE_TOKEN": self.secret,
                }
            jvms = [process, "launcher"] + (["executor"] if process == "connect" else [])
            self._empty_tmp(jvms)
            if process == "connect":
                self._remove_dead_writes()
            spawn(self._command(process), self._log(process), self._pid_file(process), own_env)
            if process == "master":
                # The endpoint's driver gives up registering after a few tries: wait here.
                wait_until(
                    lambda: self.master_status() is not None or not self._alive("master"),
                    MASTER_TIMEOUT_SECONDS,
                    interval=0.5,
                )
                if self.master_status() is None:
                    refuse_taken_ports(self)  # "did not come up" left the cause in its log
                    raise ServiceError(
                        f"spark: the master did not come up: see {self._log('master')}"
                    )

    def _empty_tmp(self, jvms: list[str]) -> None:
        """The temporary folders of JVMs about to start, emptied of what earlier ones left: the
        endpoint's executors are its application's, ended with it. The launcher only builds a
        command line, and each spark-class run has its own."""
        for jvm in jvms:
            shutil.rmtree(self._tmp(jvm), ignore_errors=True)
            self._tmp(jvm).mkdir(parents=True)

    def _remove_dead_writes(self) -> None:
        """The staging folders of writes whose endpoint died (kill -9, OOM): Spark removes a
        job's `.spark-staging-*` and `_temporary` folders only when the job ends, and later jobs
        never do, so each killed write left one in its table's folder for good (hidden from
        reads, they only took disk). Removed before the endpoint starts: no write is running
        then, the endpoint being this warehouse's only driver."""
        for pattern in ("*.db/*/.spark-staging-*", "*.db/*/_temporary"):
            for leftover in self.warehouse.glob(pattern):
                shutil.rmtree(leftover, ignore_errors=True)

    def _alive(self, process: str) -> bool:
        return read_pid(self._pid_file(process)) is not None

    def stop(self) -> None:
        # Endpoint first (it closes the metastore), then the worker with its executors.
        for process in reversed(PROCESSES):
            terminate_group(self._pid_file(process))

    def has_processes(self) -> bool:
        """Whether any of its processes is alive (something for `stop` to end)."""
        return any(self._alive(process) for process in PROCESSES)

    def is_running(self) -> bool:
        return all(self._alive(process) for process in PROCESSES)

    def is_up(self) -> bool:
        """A worker alive at the master, the endpoint registered there, and answering SQL."""
        if not self.is_running():
            return False
        status = self.master_status()
        if not status or status.get("aliveworkers", 0) < 1:
            return False
        apps = status.get("activeapps", [])
        if not any(app.get("name") == APP_NAME and app.get("state") == "RUNNING" for app in apps):
            return False
        # The port first: the Connect client retries a refused connection for minutes.
        return _accepts(self.connect_port) and self._answers_sql()

    def _answers_sql(self) -> bool:
        """A catalog query through Spark Connect. The first one opens the metastore (~20 s: Derby
        creates its schema), so `up` returns a cluster whose first real query does not pay it,
        and a metastore another process holds fails `up` rather than the first dbt run."""
        from pyspark.errors import PySparkException
        from pyspark.sql.connect.session import SparkSession

        try:
            session = SparkSession.builder.remote(self.remote).create()
            try:
                session.sql("SHOW DATABASES").collect()
            finally:
                session.stop()
        except PySparkException:
            return False
        return True

    def env(self) -> dict[str, str]:
        return {ENGINE_VARIABLE: "spark", SPARK_REMOTE_VARIABLE: self.remote}
