"""Alerts: one per failed run, per failed ERROR-severity check, per asset turning FAIL on freshness
(or never materialized for longer than its fail window).

Check results are read from the logs of finished runs (a failed blocking check fails its run, a
failed non-blocking one does not, so both run outcomes are watched). Staleness is judged by a
sensor from when each asset's newest data was written (automation/freshness.py), and compared
with its cursor.
Scanning the whole event log by storage id is not possible on the run-sharded SQLite storage
of a local instance, so neither sensor does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta

import dagster as dg
from dagster._core.definitions.freshness import FreshnessState
from dagster._time import get_current_timestamp

from data_platform.automation.freshness import followed_feeds, newest_data_written_at
from data_platform.partitions import RANGE_TAGS
from data_platform.resources.alerts import Alert, AlertWebhook

PARTITION_TAG = "dagster/partition"


def run_partition(run: dg.DagsterRun) -> str | None:
    """The run's partition, or its range as `first...last`."""
    if PARTITION_TAG in run.tags:
        return run.tags[PARTITION_TAG]
    if all(tag in run.tags for tag in RANGE_TAGS):
        return "...".join(run.tags[tag] for tag in RANGE_TAGS)
    return None


def run_assets(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """The run's assets: its selection, or else those its plan meant to materialize."""
    keys = set(run.asset_selection or ())
    if not keys:
        planned = instance.all_logs(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        )
        keys = {entry.get_dagster_event().asset_key for entry in planned}
    return ", ".join(sorted(key.to_user_string() for key in keys)) or None


def root_cause(error) -> str:
    """The innermost message: the user's exception, not Dagster's wrapper around it."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def run_failure_alert(
    instance: dg.DagsterInstance, run: dg.DagsterRun, message: str, step_errors: list[str]
) -> Alert:
    reason = "\n".join([message, *step_errors]) if step_errors else message
    return Alert(
        title="Run failed",
        reason=reason,
        asset=run_assets(instance, run) or run.job_name,
        partition=run_partition(run),
        run_id=run.run_id,
    )


def failed_check_alerts(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[Alert]:
    """An alert per ERROR-severity check that failed in the run: one per check, however many
    of its days failed (a check kept per day failed a 30-day backfill in 30 evaluations)."""
    entries = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    failed = [
        evaluation
        for entry in entries
        if not (evaluation := entry.get_dagster_event().event_specific_data).passed
        and evaluation.severity == dg.AssetCheckSeverity.ERROR
    ]
    return [
        Alert(
            title="Asset check failed",
            reason=f"{'blocking ' if first.blocking else ''}check `{first.check_name}` failed"
            + (f": {first.description}" if first.description else "")
            + (f" (and on {len(days) - 1} more days)" if len(days) > 1 else ""),
            asset=first.asset_key.to_user_string(),
            partition=days_named(days) if days else run_partition(run),
            run_id=run.run_id,
        )
        for first, days in failures_by_check(failed)
    ]


def failures_by_check(
    evaluations: Iterable[dg.AssetCheckEvaluation],
) -> list[tuple[dg.AssetCheckEvaluation, list[str]]]:
    """The failed evaluations grouped by asset check, in order of first failure: each check's
    first evaluation, and the days its evaluations name (none for a check not kept per day)."""
    grouped: dict[tuple, tuple[dg.AssetCheckEvaluation, list[str]]] = {}
    for evaluation in evaluations:
        key = (evaluation.asset_key, evaluation.check_name)
        days = grouped.setdefault(key, (evaluation, []))[1]
        if evaluation.partition is not None:
            days.append(evaluation.partition)
    return list(grouped.values())


def days_named(days: list[str]) -> str:
    """Failed days as an alert names them: each of a few, else how many and their span."""
    ordered = sorted(days)
    if len(ordered) <= 3:
        return ", ".join(ordered)
    return f"{len(ordered)} days, {ordered[0]} to {ordered[-1]}"


# Dagster fails a sensor evaluation after 60 s without saving its cursor, and the next tick
# sends everything again: against a webhook that hangs, each tick re-sent the same alerts,
# forever. A run-status sensor handles up to 5 runs a tick, each with its own budget.
SEND_BUDGET_SECONDS = 10.0


def _send(
    alerts: list[Alert],
    sender: AlertWebhook,
    context,
    budget_seconds: float = SEND_BUDGET_SECONDS,
    after_each: Callable[[Alert], None] | None = None,
) -> None:
    """Send each alert, within `budget_seconds` for all; what cannot go out in time is logged
    in full (as an alert the webhook refused is), never lost. `after_each`: called once an
    alert is handled (sent or logged)."""
    deadline = time.monotonic() + budget_seconds
    for alert in alerts:
        sender.send(alert, context.log, deadline)
        if after_each is not None:
            after_each(alert)


def _alert_run_once(
    context: dg.RunStatusSensorContext,
    tag: str,
    alerts_of: Callable[[dg.DagsterRun], list[Alert]],
    alerts: AlertWebhook,
) -> None:
    """Send `alerts_of(run)` unless the run carries `tag` with its own id, then tag it: the
    run read again, as the event's copy may be older than another process's tag."""
    run = context.instance.get_run_by_id(context.dagster_run.run_id) or context.dagster_run
    if run.tags.get(tag) == run.run_id:
        context.log.info(f"Run {run.run_id} was alerted already ({tag}).")
        return
    _send(alerts_of(run), alerts, context)
    context.instance.add_run_tags(run.run_id, {tag: run.run_id})


# A run whose process died can be reported failed twice, by two processes racing (the code
# server that spawned it, the monitoring daemon or a headless `materialize`): each report is a
# failure event, and each event an alert. The first alert tags the run with its own id; the
# sensor handles its events one at a time, so the tag is there for the second. The id, not a
# flag: a run retry copies its parent's tags, and the retry's own failure must alert.
FAILURE_ALERTED_TAG = "data_platform/failure_alerted"


# Run-status sensors match only runs of their own code location unless told otherwise: a run
# of `data-platform materialize` (executed headless, it has none) never alerted.
@dg.run_failure_sensor(
    name="alert_on_run_failure",
    description="A failed run (and each failed ERROR check in it) -> one alert each.",
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=True,
)
def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertWebhook):
    def failure_and_checks(run: dg.DagsterRun) -> list[Alert]:
        step_errors = [
            f"{event.step_key}: {root_cause(event.event_specific_data.error)}"
            for event in context.get_step_failure_events()
            if event.event_specific_data and event.event_specific_data.error
        ]
        message = context.failure_event.message or "the run failed"
        failure = run_failure_alert(context.instance, run, message, step_errors)
        return [failure, *failed_check_alerts(context.instance, run)]

    _alert_run_once(context, FAILURE_ALERTED_TAG, failure_and_checks, alerts)


# The checks of a run that did not fail, once alerted, as FAILURE_ALERTED_TAG: the sensor's
# cursor is saved when its tick ends, so a daemon killed mid-tick sent them all again.
CHECKS_ALERTED_TAG = "data_platform/checks_alerted"


def _checks_alerts_sensor(name: str, status: dg.DagsterRunStatus, how: str) -> dg.SensorDefinition:
    """A sensor alerting the failed ERROR checks of the runs that end `status`: a run-status
    sensor watches one status, and failed runs have theirs alerted with the failure."""

    @dg.run_status_sensor(
        name=name,
        run_status=status,
        description=f"A failed ERROR check in a run that {how} -> one alert each.",
        default_status=dg.DefaultSensorStatus.RUNNING,
        monitor_all_code_locations=True,
    )
    def checks_alerts(context: dg.RunStatusSensorContext, alerts: AlertWebhook):
        _alert_run_once(
            context,
            CHECKS_ALERTED_TAG,
            lambda run: failed_check_alerts(context.instance, run),
            alerts,
        )

    return checks_alerts


failed_check_alerts_sensor = _checks_alerts_sensor(
    "alert_on_failed_checks", dg.DagsterRunStatus.SUCCESS, "succeeded (non-blocking)"
)
# A failed ERROR check in a run then canceled (the UI's Terminate) was alerted by no sensor.
canceled_run_check_alerts_sensor = _checks_alerts_sensor(
    "alert_on_failed_checks_of_canceled_runs", dg.DagsterRunStatus.CANCELED, "was canceled"
)


def _fail_seconds(policy: dg.FreshnessPolicy) -> float | None:
    """The policy's fail window in seconds, or None for a policy that has none (a cron
    deadline): the one place that reads it, so the stale and never-materialized alerts and
    their texts cannot disagree about a window."""
    fail_window = getattr(policy, "fail_window", None)
    return fail_window.to_timedelta().total_seconds() if fail_window is not None else None


def describe_policy(policy: dg.FreshnessPolicy) -> str:
    window = _fail_seconds(policy)
    if window is not None:
        return (
            f"its newest data was last written over {timedelta(seconds=window)} ago (its "
            "freshness fail window; a late load of an older partition does not count)"
        )
    return f"missed its freshness deadline ({getattr(policy, 'deadline_cron', policy)})"


def freshness_failures(
    instance: dg.DagsterInstance,
    policies: dict[dg.AssetKey, dg.FreshnessPolicy],
    cursor: dict,
    now: float,
    feeds: Mapping[dg.AssetKey, Iterable[dg.AssetKey]] | None = None,
) -> tuple[list[Alert], dict]:
    """Assets that turned stale since the last alert about them, and those never materialized
    for longer than their fail window since the sensor first saw them; and the updated cursor.

    Stale is judged here, not by Dagster's freshness state: its daemon measures a time-window
    policy from any materialization, so a late file for an old day made a feed whose newest day
    had stopped arriving look fresh. Here it is measured from when the asset's newest data was
    written (automation/freshness.py, `newest_data_written_at`, a mart's no later than the
    `feeds` it follows). A policy without a window (a
    cron deadline; the platform has none) still follows Dagster's state.

    Dagster keeps a never-materialized asset UNKNOWN, never FAIL: a feed that has never
    delivered (a wrong landing prefix, a source never connected) stayed silent for good.

    The cursor: `failed` {asset: when it turned stale, alerted}, `unknown_since` {asset: first
    seen never materialized}, `unknown_alerted` [assets]. The first version's flat {asset:
    time} is `failed`; the times Dagster's state turned FAIL, which it held before, are never
    earlier than the staleness they reported, so that staleness is not alerted again."""
    failed = dict(cursor.get("failed", cursor))
    unknown_since = dict(cursor.get("unknown_since", {}))
    unknown_alerted = set(cursor.get("unknown_alerted", []))
    alerts = []
    own_times: dict[dg.AssetKey, float | None] = {}  # each asset read once per tick
    for key, policy in policies.items():
        name, window = key.to_user_string(), _fail_seconds(policy)
        written = newest_data_written_at(instance, key, (feeds or {}).get(key, ()), own_times)
        if written is None:
            since = unknown_since.setdefault(name, now)
            if window is not None and now - since >= window and name not in unknown_alerted:
                unknown_alerted.add(name)
                reason = (
                    f"never materialized in the {timedelta(seconds=window)} since the alerts "
                    "first looked (its freshness fail window): check that its source delivers "
                    "(the landing prefix, the source database's URL) and that its sensor runs"
                )
                alerts.append(Alert("Asset never materialized", reason, asset=name))
            continue
        unknown_since.pop(name, None)
        unknown_alerted.discard(name)
        stale_at = _stale_at(instance, key, written, window, now)
        if stale_at is None or stale_at <= failed.get(name, 0.0):
            continue
        failed[name] = stale_at
        alerts.append(Alert("Asset is stale", describe_policy(policy), asset=name))
    return alerts, {
        "failed": failed,
        "unknown_since": unknown_since,
        "unknown_alerted": sorted(unknown_alerted),
    }


def _stale_at(
    instance: dg.DagsterInstance,
    key: dg.AssetKey,
    written: float,
    window: float | None,
    now: float,
) -> float | None:
    """When the asset turned stale, None while it is not: its newest data is older than its fail
    window, or (a policy without a window) Dagster's state is FAIL, since that state's change."""
    if window is not None:
        return written + window if now - written >= window else None
    record = instance.get_freshness_state_records([key]).get(key)
    if record is None or record.freshness_state != FreshnessState.FAIL:
        return None
    return record.updated_at.timestamp()


@dg.sensor(
    name="alert_on_freshness_failure",
    description="An asset whose freshness policy turned FAIL, or that has never been "
    "materialized for longer than its fail window -> one alert.",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
def freshness_alerts(context: dg.SensorEvaluationContext, alerts: AlertWebhook):
    graph = context.repository_def.asset_graph
    keys = graph.get_all_asset_keys()
    policies = {key: graph.get(key).freshness_policy for key in keys}
    found, cursor = freshness_failures(
        context.instance,
        {key: policy for key, policy in policies.items() if policy},
        json.loads(context.cursor) if context.cursor else {},
        get_current_timestamp(),  # time.time(), but a test's freeze_time reaches it
        followed_feeds({key: graph.get(key).parent_keys for key in keys}),
    )
    # The cursor is saved when the tick ends: a daemon killed mid-tick sent its alerts again.
    # Each handled alert is noted at once in the instance's key-value store, per asset, with
    # what it was about (when the asset turned stale, or first seen never materialized).
    about = {a.asset: _freshness_subject(a, cursor) for a in found}
    noted = context.instance.run_storage.get_cursor_values({_noted_key(a) for a in about})
    new = [a for a in found if noted.get(_noted_key(a.asset)) != about[a.asset]]

    def note(alert: Alert) -> None:
        key = _noted_key(alert.asset)
        context.instance.run_storage.set_cursor_values({key: about[alert.asset]})

    _send(new, alerts, context, after_each=note)
    context.update_cursor(json.dumps(cursor))
    return dg.SkipReason(f"{len(new)} freshness alert(s) sent" if found else "all fresh")


def _noted_key(asset: str) -> str:
    return f"data_platform/freshness_alerted/{asset}"


def _freshness_subject(alert: Alert, cursor: dict) -> str:
    """What a freshness alert is about, as `freshness_failures`' cursor holds it."""
    if alert.asset in cursor["failed"] and alert.title == "Asset is stale":
        return f"stale since {cursor['failed'][alert.asset]}"
    return f"never materialized, seen since {cursor['unknown_since'].get(alert.asset)}"


ALERT_SENSORS = [
    run_failure_alerts,
    failed_check_alerts_sensor,
    canceled_run_check_alerts_sensor,
    freshness_alerts,
]
