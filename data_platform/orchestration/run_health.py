"""Is a run's worker process still alive? And the clean-up once it is not.

Dagster's code server marks a run failed when the run process it spawned dies, but nothing
does when the code server died too (`dagster dev` restarted, the machine rebooted) or when the
run was executed in-process by `data-platform materialize`: the run stays STARTED forever and
keeps its `duckdb` pool slot, so every later warehouse step waits behind it. Every run process
announces its pid in an engine event; a pid that is gone, or now belongs to a younger process,
means the worker is dead. A run whose process is on another host is judged by its heartbeat
instead (`heartbeat.py`), and before or after its plan by its events: its pid means nothing
here. Nor does it in another pid namespace of this machine (a container sharing the host's name
and network): the host of a run is its machine's name and its pid namespace.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import time
from collections.abc import Iterator

import dagster as dg
import psutil
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._core.events import EngineEventData
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

from data_platform.orchestration.heartbeat import (
    STALE_BEATS,
    forget_beat,
    last_beat,
    silent_too_long,
)
from data_platform.orchestration.orphaned_steps import stop_orphaned_statements, stop_orphaned_steps

# Set on every run this platform starts a process for: its pid is only meaningful on that host.
WORKER_HOST_TAG = "data_platform/worker_host"
# The pid of the process that created the run to execute it itself (`data-platform
# materialize`), which announces no pid until the run starts.
CREATOR_PID_TAG = "data_platform/creator_pid"
# A process started this long after the run announced its pid is another process (pid reuse).
# Generous: a process's wall-clock start is its start since boot plus the boot time, which a
# clock step (NTP, a VM resumed) moves; at 1 s a step failed live runs and freed their slots.
# Missed reuse needs the pid space to wrap within this time.
_PID_REUSE_SLACK_SECONDS = 30.0

# A run asked to stop, until its process says it did: if the process died first, nothing does.
_CANCELING = dg.DagsterRunStatus.CANCELING
# Every status of a run whose process may still be at work.
UNENDED = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, _CANCELING)
# `check_worker`'s verdicts for want of evidence either way: RUNNING, since no run is ended on
# none. `proven_alive` tells them apart, so that its callers never match on their wording.
_NOT_ANNOUNCED = "no run process announced yet"
_NEVER_BEAT = "no heartbeat"
# A run of another host beats only while its plan runs: before it (the worker loading the
# code) and after it (reporting the run's status) a live process writes events instead, the
# gaps seconds long. Neither beating nor writing for this long, it is gone: killed after its
# plan ended, it stayed STARTED for good, its assets "in progress" to the automation.
SILENT_RUN_SECONDS = 600.0
# A STARTING run's code server is asked whether it lives this long after the launch: a server
# just started by `dagster dev` may not answer at once.
LAUNCH_GRACE_SECONDS = 30.0
# How long that server has to answer: a live one answers in milliseconds, a loaded one in seconds.
PING_TIMEOUT_SECONDS = 10


@functools.cache
def _pid_namespace() -> str | None:
    """This process's pid namespace (Linux), which a process's pid is a number of."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return None


def this_host() -> str:
    """Where a pid of this process means this process: the machine's name, and on Linux its
    pid namespace. A container with the host's name (`network_mode: host`, `hostNetwork`) has
    pids of its own: a run's pid from there was looked up here, and a dead run was called alive
    (its pid here a kernel thread) or a live one dead (no such pid here), its slot freed."""
    namespace = _pid_namespace()
    name = socket.gethostname()
    return name if namespace is None else f"{name} (pid namespace {namespace})"


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The run process's pid and when it announced it, from the run's first engine event with one.

    Launched runs announce "Started process for run (pid: N)", in-process runs "Executing steps
    in process (pid: N)": both carry the pid as metadata before any step starts; a run whose
    executor announces none is announced by `announce_run_process`. Later pids (a step executed
    by a Celery worker) belong to other processes, so the first one is taken.
    """
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=20
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.engine_event_data if event else None
        pid = data.metadata.get("pid") if data else None
        if pid is not None and event.step_key is None:
            return int(pid.value), record.event_log_entry.timestamp
    return None


def announce_run_process(instance: dg.DagsterInstance, run_id: str) -> None:
    """Announce this process as the run's, unless one was announced already.

    dagster-celery's executor announces no pid, and a run executed by `execute_job` (a headless
    `data-platform materialize` with DATA_PLATFORM_EXECUTOR=celery) has no code server to
    announce one: killed while a step held the `duckdb` slot, it stayed STARTED, "no run process
    announced yet", and kept the slot for good."""
    if worker_pid(instance, run_id) is not None:
        return
    run = instance.get_run_by_id(run_id)
    if run is not None:
        pid = os.getpid()
        instance.report_engine_event(
            f"Executing the run's plan in process (pid: {pid})",
            run,
            EngineEventData.in_process(pid),
        )


def check_worker(instance: dg.DagsterInstance, run: dg.DagsterRun) -> CheckRunHealthResult:
    """RUNNING unless the run's process is provably gone from this host, and none of its steps
    still executes on a Celery worker; the statements its Spark sessions still run are
    interrupted then (`orphaned_steps`: its steps are stopped before its slots are freed)."""
    health = _check_process(instance, run)
    if health.status != WorkerStatus.FAILED:
        return health
    left = stop_orphaned_steps(run)
    if left is not None:
        return CheckRunHealthResult(WorkerStatus.RUNNING, f"{health.msg}; {left}")
    stop_orphaned_statements(instance, run)  # no step of it left to start another
    return health


def _check_process(instance: dg.DagsterInstance, run: dg.DagsterRun) -> CheckRunHealthResult:
    announced = worker_pid(instance, run.run_id)
    if announced is None:
        # Not started yet: `run_monitoring.start_timeout_seconds` covers a run that never starts.
        return CheckRunHealthResult(WorkerStatus.RUNNING, _NOT_ANNOUNCED)
    pid, announced_at = announced
    host = run.tags.get(WORKER_HOST_TAG)
    # The bare machine name tags a run of a version before hosts named their pid namespace:
    # judged by its pid as then. By beats it never would be (it beat under another key), and
    # killed across the upgrade it would keep its slot.
    if host is not None and host not in (this_host(), socket.gethostname()):
        return _check_heartbeat(instance, run, host, pid)
    gone = _process_gone(pid, announced_at)
    if gone:
        return CheckRunHealthResult(WorkerStatus.FAILED, gone)
    return CheckRunHealthResult(WorkerStatus.RUNNING, f"run process {pid} is alive")


def _process_gone(pid: int, alive_at: float) -> str | None:
    """Why the run process `pid` of this host, alive at `alive_at`, is gone; None if it is not."""
    try:
        process = psutil.Process(pid)
        started, status = process.create_time(), process.status()
    except psutil.NoSuchProcess:
        return f"run process {pid} is gone"
    if status == psutil.STATUS_ZOMBIE:
        # Dead, but its parent has not reaped it (a hung code server): its pid and start time
        # stay, and it was called alive for as long as the parent lived.
        return f"run process {pid} is gone (exited, never reaped)"
    if started > alive_at + _PID_REUSE_SLACK_SECONDS:
        return f"run process {pid} is gone (its pid now belongs to another)"
    return None


def _unstarted_here(
    instance: dg.DagsterInstance,
) -> Iterator[tuple[dg.DagsterRun, int, str | None]]:
    """This host's NOT_STARTED runs a process created to execute itself (`materialize`), each
    with that process's pid and why it is gone (None: alive)."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.NOT_STARTED], tags={WORKER_HOST_TAG: this_host()}
        )
    )
    for record in records:
        pid = record.dagster_run.tags.get(CREATOR_PID_TAG, "")
        # A re-execution of a `materialize` run from the UI inherits the parent's tags, this
        # one too, but the webserver made it and queues it at once: its creator is no pid here.
        if pid.isdecimal() and record.dagster_run.parent_run_id is None:
            created = record.create_timestamp.timestamp()
            yield record.dagster_run, int(pid), _process_gone(int(pid), created)


def _never_started(instance: dg.DagsterInstance) -> Iterator[tuple[dg.DagsterRun, str]]:
    """Runs a process of this host created to execute itself and died before starting, each
    with why. `data-platform materialize` killed between creating its run and starting it
    (seconds: the plan is built in between) left it NOT_STARTED for good, its partitions "in
    progress" to the automation, which then never requested them again."""
    for run, _, gone in _unstarted_here(instance):
        if gone:
            yield run, f"{gone}, and the run never started"


def runs_being_started(instance: dg.DagsterInstance) -> list[str]:
    """This host's NOT_STARTED runs whose creating process is alive (a `materialize` building
    its plan, seconds), as `<run id>: <why>`: about to write, though no process announced."""
    return [
        f"{run.run_id}: made by process {pid}, which is starting it"
        for run, pid, gone in _unstarted_here(instance)
        if gone is None
    ]


def _never_launched(instance: dg.DagsterInstance) -> Iterator[tuple[dg.DagsterRun, str]]:
    """STARTING runs whose code server, asked to start them, is gone, each with why.

    The daemon launches a run by asking a code server (tagged on the run) to start its process;
    `dagster dev` killed in between left it STARTING, no process announced, for the monitor's
    whole start timeout (180 s), and the queue held every run of the `duckdb` pool behind it
    (measured: 197 s, in the `make run` audit). A server that does not answer a ping after
    `LAUNCH_GRACE_SECONDS` never will: `dagster dev` starts another, elsewhere."""
    now = time.time()
    verdicts: dict[str, str | None] = {}  # one ping per server, however many runs it holds
    for record in instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING])
    ):
        run = record.dagster_run
        server = run.tags.get(GRPC_INFO_TAG)
        launched = instance.get_run_stats(run.run_id).launch_time
        since = launched if launched is not None else record.create_timestamp.timestamp()
        if server is None or now - since < LAUNCH_GRACE_SECONDS:
            continue
        if server not in verdicts:
            verdicts[server] = _code_server_gone(json.loads(server))
        if verdicts[server]:
            yield run, f"{verdicts[server]}, and the run never started"


def _code_server_gone(server: dict) -> str | None:
    """Why the code server of `server` (a run's GRPC_INFO_TAG) is gone; None if it answers."""
    from dagster._grpc.__generated__ import dagster_api_pb2
    from dagster._grpc.client import DagsterGrpcClient

    where = server.get("socket") or f"{server.get('host')}:{server.get('port')}"
    client = DagsterGrpcClient(
        port=server.get("port"),
        socket=server.get("socket"),
        host=server.get("host", "localhost"),
        use_ssl=bool(server.get("use_ssl", False)),
    )
    try:
        # Its public ping waits the default gRPC timeout (60 s), a sensor tick's whole budget.
        client._query("Ping", dagster_api_pb2.PingRequest, timeout=PING_TIMEOUT_SECONDS, echo="")
    except DagsterUserCodeUnreachableError:
        return f"the code server asked to start it ({where}) does not answer"
    return None


def _check_heartbeat(
    instance: dg.DagsterInstance, run: dg.DagsterRun, host: str, pid: int
) -> CheckRunHealthResult:
    """A run whose process is on another host: judged by its heartbeat (heartbeat.py)."""
    last = last_beat(instance, run.run_id)
    now = time.time()
    if last is None:
        # Before its plan or after it: no slot held, and silent, dead.
        [latest] = instance.get_records_for_run(run.run_id, ascending=False, limit=1).records
        quiet = now - latest.event_log_entry.timestamp
        if quiet > SILENT_RUN_SECONDS:
            return CheckRunHealthResult(
                WorkerStatus.FAILED,
                f"run process {pid} on {host} is gone (no heartbeat, and no event for "
                f"{quiet:.0f} s: it died before its plan began or after it ended)",
            )
        return _never_beat(host)
    at, every = last
    silent = now - at
    if silent_too_long(at, every, now):
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"run process {pid} on {host} is gone (no heartbeat for {silent:.0f} s, "
            f"{STALE_BEATS} beats of {every:g} s)",
        )
    return CheckRunHealthResult(
        WorkerStatus.RUNNING, f"run process {pid} on {host} beat {silent:.0f} s ago"
    )


def _never_beat(host: str) -> CheckRunHealthResult:
    return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker on {host}: {_NEVER_BEAT}")


def proven_alive(health: CheckRunHealthResult) -> bool:
    """Whether `check_worker` saw the run's process alive or beating, not merely found nothing
    against it (no process announced, a host that never beat)."""
    return health.status == WorkerStatus.RUNNING and not (
        health.msg == _NOT_ANNOUNCED or str(health.msg).endswith(f": {_NEVER_BEAT}")
    )


def _end(instance: dg.DagsterInstance, run: dg.DagsterRun, reason: str) -> str:
    """Mark a run whose process is gone as ended: canceled if it was being canceled (what it
    was asked to become), else failed (so run retries may pick it up)."""
    if run.status == _CANCELING:
        message = f"Run {run.run_id} marked canceled: {reason}."
        instance.report_run_canceled(run, message=message)
    else:
        message = f"Run {run.run_id} marked failed: {reason}."
        instance.report_engine_event(message, run)
        instance.report_run_failed(run)
    forget_beat(instance, run.run_id)  # ended: its beat, if its process left one, says nothing
    return message


def _free_slots_of_finished_runs(instance: dg.DagsterInstance) -> list[str]:
    done = []
    for run_id in instance.event_log_storage.get_concurrency_run_ids():
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
            status = run.status.value if run else "deleted"
            done.append(f"Freed the pool slots and claims of run {run_id} ({status}).")
    return done


def release_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """End the runs whose process died (failed, or canceled if they were being canceled), free
    pool slots held by finished runs; say what was done.

    What the monitoring daemon does under `dagster dev`, for when no daemon runs: a headless
    `data-platform materialize` calls it first, so a crash earlier never makes it wait forever.
    """
    dead = [
        (listed, str(health.msg))
        for listed in instance.get_runs(filters=dg.RunsFilter(statuses=list(UNENDED)))
        if (health := check_worker(instance, listed)).status == WorkerStatus.FAILED
    ]
    done = [
        message
        for listed, reason in dead
        if (message := _end_unless_ended(instance, listed, reason))
    ]
    return done + release_never_started_runs(instance) + _free_slots_of_finished_runs(instance)


def release_never_started_runs(instance: dg.DagsterInstance) -> list[str]:
    """Fail the runs that will never start, whoever was to start them gone: a NOT_STARTED run of
    this host whose creating process died, a STARTING run whose code server does not answer;
    say so.

    `release_dead_runs` does it before a `data-platform materialize`, and the
    `never_started_runs` sensor under `dagster dev`: the monitoring daemon fails such a run only
    at its start timeout (180 s), the queue holding the `duckdb` pool's runs meanwhile."""
    return [
        message
        for listed, reason in [*_never_started(instance), *_never_launched(instance)]
        if (message := _end_unless_ended(instance, listed, reason))
    ]


def _end_unless_ended(
    instance: dg.DagsterInstance, listed: dg.DagsterRun, reason: str
) -> str | None:
    # Read again: a run that ended in between (its process reported success and exited, or
    # the daemon failed it first) would be flipped to FAILURE, alerted twice, retried.
    run = instance.get_run_by_id(listed.run_id)
    return None if run is None or run.is_finished else _end(instance, run, reason)


def release_restored_runs(instance: dg.DagsterInstance) -> list[str]:
    """Fail every run a restored instance holds as unfinished, and free its pool slots.

    Those runs were running when the backup was taken (the scheduled backup's own run among
    them); no restore brings their processes back. On another machine their host tag means
    `check_worker` would never call them dead, and their `duckdb` slot would block every
    warehouse step for good. So were the NOT_STARTED ones, made by a `materialize` that had
    not started them yet: none would ever start, and the never-started sweep looks only at
    this host's. QUEUED runs stay: the daemon launches them on the restored home.
    """
    reason = "it was running when the backup was taken, and a restore does not resume it"
    statuses = [*UNENDED, dg.DagsterRunStatus.NOT_STARTED]
    unfinished = instance.get_runs(filters=dg.RunsFilter(statuses=statuses))
    return [_end(instance, run, reason) for run in unfinished] + _free_slots_of_finished_runs(
        instance
    )
