"""Alerts reach a real HTTP server on 127.0.0.1 as Slack-compatible JSON, with bounded retries."""

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import dagster as dg
import pytest

from data_platform.automation.alert_sensors import (
    FAILURE_ALERTED_TAG,
    _send,
    canceled_run_check_alerts_sensor,
    failed_check_alerts_sensor,
    run_failure_alerts,
)
from data_platform.resources.alerts import (
    Alert,
    AlertDeliveryError,
    AlertWebhook,
    post_json,
    slack_payload,
)
from data_platform.resources.build import build_resources
from data_platform.settings import load_settings


class Webhook:
    """A local webhook that answers 503 to its first `failures` requests, then 200, each after
    `delay` seconds; or, with `redirect`, that status to /moved, whose GETs it keeps in
    `followed`."""

    def __init__(self, failures: int = 0, delay: float = 0.0, redirect: int | None = None):
        self.failures, self.received, self.followed = failures, [], []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append(json.loads(body))
                time.sleep(delay)
                if redirect is not None:
                    self.send_response(redirect)
                    self.send_header("Location", "/moved")
                    self.end_headers()
                    return
                status = 503 if len(hook.received) <= hook.failures else 200
                self.send_response(status)
                self.end_headers()

            def do_GET(self):
                hook.followed.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sender(self) -> AlertWebhook:
        return AlertWebhook(webhook_url=self.url, backoff_seconds=0.01, max_backoff_seconds=0.02)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()


def fields(payload: dict) -> dict[str, str]:
    section = next(b for b in payload["blocks"] if "fields" in b)
    return dict(f["text"].strip("*").split("*\n", 1) for f in section["fields"])


def link(payload: dict) -> str:
    actions = next(b for b in payload["blocks"] if b["type"] == "actions")
    return actions["elements"][0]["url"]


def test_payload_is_slack_compatible():
    alert = Alert(
        "Run failed", "boom\ndetails", asset="raw/events", partition="2026-01-05", run_id="r1"
    )
    payload = slack_payload(alert, "http://ui.local:3000/")
    assert payload["text"].startswith("Run failed: raw/events [2026-01-05]: boom")
    assert fields(payload) == {"Asset": "raw/events", "Partition": "2026-01-05"}
    assert link(payload) == "http://ui.local:3000/runs/r1"
    assert link(slack_payload(Alert("Stale", "old", asset="marts/fct_events"), "http://u")) == (
        "http://u/assets/marts/fct_events"
    )
    long = slack_payload(Alert("x", "y" * 5000), "http://u")
    texts = [b["text"]["text"] for b in long["blocks"] if "text" in b]
    texts += [f["text"] for b in long["blocks"] for f in b.get("fields", [])]
    # Slack rejects the whole message when one section text is over 3000 characters.
    assert max(len(text) for text in texts) <= 3000
    [reason] = [text for text in texts if text.startswith("*Reason*\n")]
    assert reason.endswith("y…")  # cut, and said to be


def test_retries_with_bounded_exponential_backoff():
    hook = Webhook(failures=2)
    waits: list[float] = []
    attempts = post_json(
        hook.url,
        {"text": "hi"},
        attempts=4,
        backoff_seconds=0.5,
        max_backoff_seconds=0.8,
        timeout_seconds=5,
        sleep=waits.append,
    )
    hook.server.shutdown()
    assert attempts == 3 and len(hook.received) == 3
    assert waits == [0.5, 0.8]  # doubled, then capped


def test_no_back_off_sleeps_past_the_deadline():
    """A webhook answering 503 slowly: the sleep after a failure ignored the deadline (a 10 s
    budget took 13.6 s), so five runs a tick outlasted Dagster's 60 s sensor timeout and the
    check sensor, its cursor lost, sent the same alerts again every tick."""
    hook = Webhook(failures=10)
    slept: list[float] = []
    deadline = time.monotonic() + 1.0
    with pytest.raises(AlertDeliveryError, match="HTTP 503, attempt 1 of 4; no time left"):
        post_json(
            hook.url,
            {"text": "hi"},
            attempts=4,
            backoff_seconds=5.0,
            max_backoff_seconds=8.0,
            timeout_seconds=5,
            deadline=deadline,
            sleep=slept.append,
        )
    hook.server.shutdown()
    assert slept == [] and len(hook.received) == 1


def test_a_webhook_that_fails_twice_then_succeeds_gets_the_alert_once(caplog):
    hook = Webhook(failures=2)
    assert hook.sender().send(Alert("Run failed", "boom", asset="raw/events"), logging.getLogger())
    hook.server.shutdown()
    assert [p["text"] for p in hook.received].count(hook.received[-1]["text"]) == 3
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_webhook_that_hangs_gets_each_alert_once_and_the_tick_a_bounded_time(caplog):
    """A webhook slower than the timeout had each alert already: retrying the read timeout sent
    it again and again, and four attempts per alert outlasted Dagster's 60 s sensor timeout, so
    the tick failed without its cursor and the next one sent everything once more, forever."""
    hook = Webhook(delay=2.0)
    sender = AlertWebhook(webhook_url=hook.url, timeout_seconds=0.5, backoff_seconds=0.01)
    context = SimpleNamespace(log=logging.getLogger("alerts"))  # what _send uses of a context
    alerts = [Alert("Run failed", f"boom {n}", asset="raw/events") for n in range(4)]
    began = time.monotonic()
    _send(alerts, sender, context, budget_seconds=1.2)
    took = time.monotonic() - began
    hook.server.shutdown()
    texts = [p["text"] for p in hook.received]
    assert len(texts) == len(set(texts)) <= 3  # none doubled; the budget ran out before all
    assert texts and "boom 0" in texts[0]  # the first went out (to a webhook that never answered)
    assert took < 2.0
    undelivered = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert len(undelivered) == len(alerts)  # each alert is in the log in full


def test_an_unreachable_webhook_or_none_logs_the_alert(caplog):
    dead = AlertWebhook(webhook_url="http://127.0.0.1:9/hook", attempts=2, backoff_seconds=0.01)
    caplog.set_level(logging.WARNING)
    assert not dead.send(Alert("Run failed", "boom", asset="raw/events"), logging.getLogger())
    assert not AlertWebhook().send(Alert("Asset is stale", "old", asset="x"), logging.getLogger())
    messages = [r.getMessage() for r in caplog.records]
    assert any("not delivered" in m and "raw/events" in m for m in messages)
    assert any(
        "DATA_PLATFORM_ALERT_WEBHOOK is unset" in m and "Asset is stale" in m for m in messages
    )
    assert not any("127.0.0.1:9" in m for m in messages)  # the URL is a secret


@pytest.mark.parametrize("status", [301, 302, 303, 307])
def test_a_webhook_that_redirects_is_not_counted_as_delivered(status, caplog):
    """urllib followed a 301/302/303 with a GET without the body, the target answered 200: the
    alert, received by nobody, counted as delivered and was not logged."""
    hook = Webhook(redirect=status)
    caplog.set_level(logging.WARNING)
    try:
        assert not hook.sender().send(
            Alert("Run failed", "boom", asset="raw/events"), logging.getLogger()
        )
    finally:
        hook.server.shutdown()
    # Posted once (a redirect is not the webhook failing: no retry), never followed.
    assert (len(hook.received), hook.followed) == (1, [])
    assert any("not delivered" in r.getMessage() for r in caplog.records)


def test_slack_shows_an_error_text_verbatim():
    """`<class 'int'>` in an error was read by Slack as a link, `<!channel>` pinged a channel."""
    alert = Alert("Run failed", "expected <class 'int'> & <!channel>", asset="a<b>")
    payload = slack_payload(alert, "http://u")
    escaped = "expected &lt;class 'int'&gt; &amp; &lt;!channel&gt;"
    assert f"*Reason*\n{escaped}" in [b["text"]["text"] for b in payload["blocks"] if "text" in b]
    assert fields(payload)["Asset"] == "a&lt;b&gt;"
    assert payload["text"] == f"Run failed: a&lt;b&gt;: {escaped} <http://u/assets/a%3Cb%3E>"


def test_the_webhook_url_reaches_the_resource_as_an_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_ALERT_WEBHOOK", "https://hooks.example/secret")
    resources = build_resources(
        load_settings(
            {
                "DATA_PLATFORM_HOME": str(tmp_path),
                **{"DATA_PLATFORM_ALERT_WEBHOOK": "https://hooks.example/secret"},
            }
        )
    )
    assert isinstance(resources["alerts"].webhook_url, dg.EnvVar)
    assert (
        build_resources(load_settings({"DATA_PLATFORM_HOME": str(tmp_path)}))["alerts"].webhook_url
        is None
    )


DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01")


@dg.asset(partitions_def=DAILY, key=["raw", "events"])
def breaks() -> None:
    raise RuntimeError("landing zone unreachable")


@dg.asset(
    key=["marts", "fct_events"],
    check_specs=[
        dg.AssetCheckSpec("unique_event_id", asset=["marts", "fct_events"], blocking=True),
        dg.AssetCheckSpec("row_count", asset=["marts", "fct_events"]),
        dg.AssetCheckSpec("soft_rule", asset=["marts", "fct_events"]),
    ],
)
def checked(context: dg.AssetExecutionContext):
    blocking_fails = context.run.tags.get("blocking") == "fail"
    yield dg.MaterializeResult(
        check_results=[
            dg.AssetCheckResult(
                check_name="unique_event_id", passed=not blocking_fails, description="2 duplicates"
            ),
            dg.AssetCheckResult(check_name="row_count", passed=False, description="0 rows"),
            dg.AssetCheckResult(
                check_name="soft_rule", passed=False, severity=dg.AssetCheckSeverity.WARN
            ),
        ]
    )


def finished_run(instance, assets, **kwargs):
    result = dg.materialize(assets, instance=instance, raise_on_error=False, **kwargs)
    return instance.get_run_by_id(result.run_id), result


def failure_context(instance, run, webhook, failure=None):
    """The failure sensor's context for `failure`, by default the run's first failure event."""
    failure = failure or instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[0]
    return dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure.get_dagster_event(),
        resources={"alerts": webhook.sender()},
    ).for_run_failure()


def test_a_failed_run_sends_one_alert_with_asset_partition_reason_and_link(webhook):
    instance = dg.DagsterInstance.ephemeral()
    run, _ = finished_run(instance, [breaks], partition_key="2026-01-05")
    run_failure_alerts(failure_context(instance, run, webhook))
    (payload,) = webhook.received
    assert fields(payload) == {"Asset": "raw/events", "Partition": "2026-01-05"}
    assert "landing zone unreachable" in json.dumps(payload)
    assert link(payload) == f"http://127.0.0.1:3000/runs/{run.run_id}"


def test_a_run_reported_failed_twice_alerts_once(webhook):
    """Two processes can both find a dead run's process gone and report it failed (seen in CI:
    the code server and the monitoring daemon): each report is a failure event, and each event
    sent an alert."""
    instance = dg.DagsterInstance.ephemeral()
    run, _ = finished_run(instance, [breaks], partition_key="2026-01-05")
    instance.report_run_failed(run)  # the second report, from outside the run
    failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert len(failures) == 2
    for failure in failures:
        run_failure_alerts(failure_context(instance, run, webhook, failure))
    (payload,) = webhook.received
    assert link(payload) == f"http://127.0.0.1:3000/runs/{run.run_id}"


def test_a_retry_of_an_alerted_run_that_fails_alerts_again(webhook):
    """Dagster's run retries copy the parent's tags: the first alert's tag came with them, and
    the retry's own failure was taken for the parent's second report and never sent."""
    instance = dg.DagsterInstance.ephemeral()
    parent, _ = finished_run(instance, [breaks], partition_key="2026-01-05")
    run_failure_alerts(failure_context(instance, parent, webhook))
    inherited = instance.get_run_by_id(parent.run_id).tags
    assert FAILURE_ALERTED_TAG in inherited
    retry, _ = finished_run(instance, [breaks], partition_key="2026-01-05", tags=inherited)
    assert retry.tags[FAILURE_ALERTED_TAG] == inherited[FAILURE_ALERTED_TAG]
    run_failure_alerts(failure_context(instance, retry, webhook))
    assert [link(payload) for payload in webhook.received] == [
        f"http://127.0.0.1:3000/runs/{run.run_id}" for run in (parent, retry)
    ]


ALERT_DEFS = """
import dagster as dg
from data_platform.automation.alert_sensors import run_failure_alerts
from data_platform.resources.alerts import AlertWebhook

defs = dg.Definitions(
    sensors=[run_failure_alerts], resources={{"alerts": AlertWebhook(webhook_url="{url}")}}
)
"""


def test_a_failed_headless_run_alerts_through_the_daemons_sensor_loop(webhook, tmp_path):
    """The sensor evaluated as the daemon does, from a code location: run-status sensors match
    only runs of their own code location unless told otherwise, so a failed run of
    `data-platform materialize` (executed headless, it has none) sent no alert."""
    import logging
    from datetime import UTC, datetime, timedelta

    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.test_utils import InProcessTestWorkspaceLoadTarget, freeze_time
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._daemon.sensor import execute_sensor_iteration

    module = tmp_path / "alert_defs.py"
    module.write_text(ALERT_DEFS.format(url=webhook.url))
    target = LoadableTargetOrigin(python_file=str(module), attribute="defs")
    origin = InProcessCodeLocationOrigin(target, location_name="data_platform")
    with (
        dg.instance_for_test() as instance,
        WorkspaceProcessContext(instance, InProcessTestWorkspaceLoadTarget(origin)) as workspace,
    ):
        now = datetime.now(UTC)

        def iterate() -> None:
            nonlocal now
            now += timedelta(seconds=60)
            with freeze_time(now):
                list(execute_sensor_iteration(workspace, logging.getLogger("test"), None, None))

        iterate()  # a new run-status sensor starts after what already happened
        run, _ = finished_run(instance, [breaks], partition_key="2026-01-05")
        assert run.status == dg.DagsterRunStatus.FAILURE and run.remote_job_origin is None
        iterate()
        iterate()
    assert [fields(p)["Asset"] for p in webhook.received] == ["raw/events"]


def status_context(
    instance: dg.DagsterInstance, run: dg.DagsterRun, sensor_name: str, webhook: Webhook
) -> dg.RunStatusSensorContext:
    """What a run-status sensor is given for `run`'s last status event."""
    ended = {
        dg.DagsterRunStatus.SUCCESS: dg.DagsterEventType.RUN_SUCCESS,
        dg.DagsterRunStatus.CANCELED: dg.DagsterEventType.RUN_CANCELED,
    }[run.status]
    return dg.build_run_status_sensor_context(
        sensor_name=sensor_name,
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=instance.all_logs(run.run_id, of_type=ended)[-1].get_dagster_event(),
        resources={"alerts": webhook.sender()},
    )


def test_failed_error_checks_send_one_alert_each_warn_none(webhook):
    instance = dg.DagsterInstance.ephemeral()
    # A failed blocking check fails its run: one alert for the run, one per failed ERROR check.
    run, _ = finished_run(instance, [checked], tags={"blocking": "fail"})
    assert run.status == dg.DagsterRunStatus.FAILURE
    run_failure_alerts(failure_context(instance, run, webhook))
    titles = sorted((p["blocks"][0]["text"]["text"], fields(p)["Asset"]) for p in webhook.received)
    assert titles == [
        ("Asset check failed", "marts/fct_events"),
        ("Asset check failed", "marts/fct_events"),
        ("Run failed", "marts/fct_events"),
    ]
    assert any(
        "unique_event_id" in p["text"] and "2 duplicates" in p["text"] for p in webhook.received
    )

    # A failed non-blocking ERROR check leaves its run green: the success sensor alerts once.
    webhook.received.clear()
    run, _ = finished_run(instance, [checked])
    assert run.status == dg.DagsterRunStatus.SUCCESS
    context = status_context(instance, run, "alert_on_failed_checks", webhook)
    failed_check_alerts_sensor(context)
    (payload,) = webhook.received
    assert "row_count" in payload["text"] and link(payload).endswith(run.run_id)
    # A tick retried after a daemon died mid-tick (its cursor unsaved) sends nothing twice.
    failed_check_alerts_sensor(context)
    assert len(webhook.received) == 1


def test_a_failed_error_check_of_a_canceled_run_is_alerted(webhook):
    """One sensor watched FAILURE runs, the other SUCCESS: a run canceled after its ERROR check
    failed (non-blocking) was alerted by neither."""
    instance = dg.DagsterInstance.ephemeral()
    run, _ = finished_run(instance, [checked])
    instance.report_run_canceling(run)
    instance.report_run_canceled(run)
    run = instance.get_run_by_id(run.run_id)
    assert run.status == dg.DagsterRunStatus.CANCELED
    context = status_context(instance, run, "alert_on_failed_checks_of_canceled_runs", webhook)
    canceled_run_check_alerts_sensor(context)
    (payload,) = webhook.received
    assert "row_count" in payload["text"] and link(payload).endswith(run.run_id)


def test_a_failed_delivery_logs_the_error_class_or_http_status_never_the_url(caplog):
    """http.client's InvalidURL message quotes the URL's path, a Slack webhook's secret: what
    failed is logged by its class or HTTP status only."""
    caplog.set_level(logging.WARNING)
    secret = "SECRETPART"
    # Logged in full, as no webhook has it: the one-line text holds only the reason's start.
    reason = "boom\n" + "step raw__events: " + "x" * 300
    alert = Alert("Run failed", reason, asset="raw/events")
    spaced = AlertWebhook(webhook_url=f"http://127.0.0.1:9/services/{secret} x", attempts=1)
    assert not spaced.send(alert, logging.getLogger())
    hook = Webhook(failures=1)
    refused = AlertWebhook(webhook_url=f"{hook.url}/{secret}", attempts=1)
    assert not refused.send(alert, logging.getLogger())
    hook.server.shutdown()
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(": Run failed")[0] for m in messages] == [
        "ALERT not delivered to the webhook (InvalidURL, attempt 1 of 1)",
        "ALERT not delivered to the webhook (HTTP 503, attempt 1 of 1)",
    ]
    assert not any(secret in m for m in messages)
    assert all(m.endswith(reason) for m in messages)


def test_a_check_failed_on_many_days_is_one_alert_naming_them():
    """A check kept per day failed a 30-day backfill in 30 evaluations: 30 alerts for one
    cause. One per check, naming its days; a check failed once keeps its own alert."""
    from data_platform.automation.alert_sensors import days_named, failures_by_check

    def failed(check: str, day: str | None) -> dg.AssetCheckEvaluation:
        return dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey(["raw", "events"]),
            check_name=check,
            passed=False,
            partition=day,
        )

    days = [f"2026-01-{d:02d}" for d in range(1, 31)]
    grouped = failures_by_check(
        [failed("dead_letter_ratio", day) for day in days] + [failed("rows_are_valid", None)]
    )
    assert [(first.check_name, len(named)) for first, named in grouped] == [
        ("dead_letter_ratio", 30),
        ("rows_are_valid", 0),
    ]
    assert days_named(grouped[0][1]) == "30 days, 2026-01-01 to 2026-01-30"
    assert days_named(["2026-01-05", "2026-01-02"]) == "2026-01-02, 2026-01-05"
