"""Alerts: Slack-compatible JSON posted to DATA_PLATFORM_ALERT_WEBHOOK, or logged when it is unset.

Standard library only (urllib): an alert must still go out when an optional HTTP client is
broken. Delivery retries with bounded exponential back-off; an alert that still cannot be
delivered is logged in full, so it is never lost silently, and the sensor moves on instead of
stalling every later alert behind a dead webhook.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import dagster as dg

DEFAULT_UI_URL = "http://127.0.0.1:3000"
# Slack rejects a section text longer than 3000 characters.
MAX_REASON_CHARS = 2000
HEADLINE_CHARS = 200


@dataclass(frozen=True)
class Alert:
    """What went wrong, where, and the run to open (if a run was involved)."""

    title: str
    reason: str
    asset: str | None = None
    partition: str | None = None
    run_id: str | None = None


def alert_link(alert: Alert, ui_base_url: str) -> str:
    base = ui_base_url.rstrip("/")
    if alert.run_id:
        return f"{base}/runs/{alert.run_id}"
    if alert.asset:
        return f"{base}/assets/{quote(alert.asset)}"
    return base


def slack_escaped(text: str) -> str:
    """`text` as Slack shows it verbatim: its control characters (&, <, >) escaped, so an
    error's `<class 'int'>` is not read as a link and `<!channel>` in a message pings nobody."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: Alert, ui_base_url: str) -> dict:
    """{"text": one line for notifications, "blocks": the fields and a link button}."""
    reason = slack_escaped(
        alert.reason
        if len(alert.reason) <= MAX_REASON_CHARS
        else alert.reason[:MAX_REASON_CHARS] + "…"
    )
    link = alert_link(alert, ui_base_url)
    subject = slack_escaped(alert.asset or "the platform")
    headline = reason.splitlines()[0][:HEADLINE_CHARS] if reason else ""
    partition = f" [{slack_escaped(alert.partition)}]" if alert.partition else ""
    fields = [
        ("Asset", slack_escaped(alert.asset or "-")),
        ("Partition", slack_escaped(alert.partition or "-")),
    ]
    return {
        "text": f"{alert.title}: {subject}{partition}: {headline} <{link}>",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": alert.title}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in fields
                ],
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Reason*\n{reason}"}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in Dagster"},
                        "url": link,
                    }
                ],
            },
        ],
    }


def _in_full(alert: Alert, payload: dict) -> str:
    """The alert as the log keeps it when no webhook has it: the one-line text, then the whole
    reason (the text holds only its first line, cut to HEADLINE_CHARS)."""
    return f"{payload['text']}\n{alert.reason}"


class AlertDeliveryError(RuntimeError):
    """The webhook refused or could not be reached on every attempt."""


def _retryable(error: Exception) -> bool:
    # A 4xx other than 429 is a wrong URL or payload: repeating it cannot help.
    if isinstance(error, urllib.error.HTTPError):
        return error.code == 429 or error.code >= 500
    # urllib wraps what fails while connecting and sending in URLError; a bare timeout came
    # while waiting for the answer, after the webhook had the alert: sent again, it is doubled.
    if isinstance(error, TimeoutError):
        return False
    return isinstance(error, OSError)


def failure(error: Exception) -> str:
    """What failed, safe to log: the HTTP status, or the error's class (and its reason's, for
    urllib's URLError). Never its message: http.client's InvalidURL quotes the URL's path,
    which is a Slack webhook's secret."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        return f"{type(error).__name__}: {type(error.reason).__name__}"
    return type(error).__name__


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: urllib followed a 301/302/303 by a GET without the body, which
    the target answered 200, so an alert nobody received counted as delivered (a webhook set
    as http:// for an https endpoint, a proxy, a moved path)."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post_json(
    url: str,
    payload: dict,
    *,
    attempts: int,
    backoff_seconds: float,
    max_backoff_seconds: float,
    timeout_seconds: float,
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """POST `payload`; retry with back-off doubling up to a cap, never past `deadline`
    (time.monotonic()). Returns the attempts used."""
    body = json.dumps(payload).encode()
    delay = backoff_seconds
    for attempt in range(1, attempts + 1):
        timeout = timeout_seconds
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                raise AlertDeliveryError(f"no time left to send it (attempt {attempt})")
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with _OPENER.open(request, timeout=timeout):
                return attempt
        except Exception as error:
            if attempt == attempts or not _retryable(error):
                raise AlertDeliveryError(
                    f"{failure(error)}, attempt {attempt} of {attempts}"
                ) from error
            # The back-off counts against the deadline too: a slow 503 then a full sleep ran
            # a 10 s budget to 13.6 s, past the sensor tick's own limit.
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise AlertDeliveryError(
                    f"{failure(error)}, attempt {attempt} of {attempts}; no time left to retry"
                ) from error
        sleep(delay)
        delay = min(delay * 2, max_backoff_seconds)
    raise AssertionError("unreachable: attempts must be at least 1")


class AlertWebhook(dg.ConfigurableResource):
    """Sends alerts; the URL is a secret, given as dg.EnvVar("DATA_PLATFORM_ALERT_WEBHOOK")."""

    webhook_url: str | None = None
    ui_base_url: str = DEFAULT_UI_URL
    attempts: int = 4
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 8.0
    timeout_seconds: float = 10.0

    def send(self, alert: Alert, log: logging.Logger, deadline: float | None = None) -> bool:
        """True when the webhook accepted the alert; otherwise the alert is in the log. No
        attempt runs past `deadline` (time.monotonic())."""
        payload = slack_payload(alert, self.ui_base_url)
        if not self.webhook_url:
            log.warning(f"ALERT (DATA_PLATFORM_ALERT_WEBHOOK is unset): {_in_full(alert, payload)}")
            return False
        try:
            post_json(
                self.webhook_url,
                payload,
                attempts=self.attempts,
                backoff_seconds=self.backoff_seconds,
                max_backoff_seconds=self.max_backoff_seconds,
                timeout_seconds=self.timeout_seconds,
                deadline=deadline,
            )
        except AlertDeliveryError as error:
            log.error(f"ALERT not delivered to the webhook ({error}): {_in_full(alert, payload)}")
            return False
        return True
