"""What the UI tests need around the browser: a running `dagster dev`, Debian's chromium, and
ways to read a Dagster UI page the way a person does (wait for the content, not for a timer).

Kept apart from the tests so each test reads as what a user sees. Nothing here knows the
platform's assets: the tests compute their expectations from the Definitions and the warehouse.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import dagster as dg
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.remote_origin import (
    RegisteredCodeLocationOrigin,
    RemoteInstigatorOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    SensorInstigatorData,
)
from selenium import webdriver
from selenium.common.exceptions import (
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from data_platform_tests.helpers import environ_without_settings, free_port

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# A page of the UI renders within seconds; on a busy 2-core machine asset pages stay on
# "Loading…" for a while, so every wait allows this much.
PAGE_TIMEOUT = 60.0
SERVER_START_TIMEOUT = 180.0
T = TypeVar("T")


def platform_env(home: Path, dagster_home: Path) -> dict[str, str]:
    """This process's environment pointed at `home`: no DATA_PLATFORM_* or DAGSTER_* setting of
    the caller leaks in, and the venv's bin (dbt, dagster) comes first on PATH."""
    env = environ_without_settings()
    env |= {
        "DATA_PLATFORM_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return env


def stop_sensors(
    instance: dg.DagsterInstance, location: str, repository: str, sensors: list[dg.SensorDefinition]
) -> None:
    """Store `sensors` of the code location as STOPPED, before `dagster dev` starts.

    The UI tests look at a world that is already materialized. Left running, the sensors would
    see every landing file and source row as new (their cursors start empty) and re-ingest it
    all, and automation would rebuild the marts: minutes of runs competing with the run the test
    starts from the UI, and pages changing under the assertions. The daemon and the UI find a
    sensor's state by its selector (location, repository, sensor name), so the states are written
    from the Definitions already loaded here instead of loading the workspace once more (a
    process and ~10 s of CPU); `sensor_statuses` then checks them as `dagster dev` serves them.
    """
    code_location = RemoteRepositoryOrigin(RegisteredCodeLocationOrigin(location), repository)
    for sensor in sensors:
        instance.add_instigator_state(
            InstigatorState(
                RemoteInstigatorOrigin(code_location, sensor.name),
                InstigatorType.SENSOR,
                InstigatorStatus.STOPPED,
                SensorInstigatorData(
                    min_interval=sensor.minimum_interval_seconds, sensor_type=sensor.sensor_type
                ),
            )
        )


SENSORS_QUERY = """
query ($location: String!, $repository: String!) {
  sensorsOrError(repositorySelector: {
    repositoryLocationName: $location, repositoryName: $repository
  }) {
    __typename
    ... on Sensors { results { name sensorState { status } } }
  }
}
"""


def sensor_statuses(url: str, location: str, repository: str) -> dict[str, str]:
    """Each sensor of the code location and its status (RUNNING, STOPPED) as the running UI
    reports them, once the location has loaded."""
    body = json.dumps(
        {"query": SENSORS_QUERY, "variables": {"location": location, "repository": repository}}
    ).encode()
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while True:
        request = urllib.request.Request(
            f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)["data"]["sensorsOrError"]
        if answer["__typename"] == "Sensors":
            return {s["name"]: s["sensorState"]["status"] for s in answer["results"]}
        # RepositoryNotFoundError while the code location is still loading.
        if time.monotonic() > deadline:
            raise TimeoutError(f"{location} not loaded by {url}: {answer}")
        time.sleep(0.25)


@dataclass
class DagsterDev:
    """A `dagster dev` (webserver and daemon) started on 127.0.0.1."""

    url: str
    process: subprocess.Popen
    log: Path

    def wait_until_serving(self) -> None:
        """Return once the webserver answers; fail with its log if it exits or takes longer
        than `SERVER_START_TIMEOUT`."""
        began = time.monotonic()
        while not _serving(self.url):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"dagster dev exited: see {self.log}\n{self.log.read_text()[-3000:]}"
                )
            if time.monotonic() - began > SERVER_START_TIMEOUT:
                raise TimeoutError(f"dagster dev not serving after {SERVER_START_TIMEOUT:.0f} s")
            time.sleep(0.25)


def _serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=5):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def dagster_dev(env: dict[str, str], log: Path) -> Iterator[DagsterDev]:
    """`dagster dev` on a free port, with the repo's workspace, until the block ends; then its
    whole process group is killed: SIGTERM is ignored when the suite itself was started with
    SIGINT ignored (a background job: orchestration/stoppable.py), and a clean stop took ~10 s.

    It yields as soon as the process is started, not once it serves (`wait_until_serving`):
    its ~20 s of start-up (three processes importing Dagster, one loading the Definitions)
    can then run on the other core while the caller does something else.
    """
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("dagster")),
        *("dev", "--host", "127.0.0.1", "--port", str(port), "-w", "workspace.yaml"),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield DagsterDev(f"http://127.0.0.1:{port}", process, log)
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    # The webserver, the daemon, the code servers and the run workers of the session: the
    # world they served is thrown away with them, so nothing needs a clean shutdown (which
    # took ~10 s of the module's time).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[WebDriver]:
    """Debian's headless chromium through its chromedriver, with a fresh profile in `profile`.

    The executables are given explicitly so selenium never tries to download a browser or a
    driver (there is no network for that here, nor in CI). No background networking, component
    updates or first-run pages: the browser only talks to the UI under test.
    """
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        raise RuntimeError(
            f"missing {', '.join(missing)}: apt-get install chromium chromium-driver "
            "(`make test` does it as root)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1600,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: WebDriver, find: Callable[[WebDriver], T], what: str) -> T:
    """The first truthy result of `find`, retried while the page renders (stale elements and
    'Loading…' placeholders included); fails naming `what` was never shown."""

    def attempt(d: WebDriver) -> T | None:
        try:
            return find(d) or None
        except (StaleElementReferenceException, WebDriverException):
            return None

    return WebDriverWait(driver, PAGE_TIMEOUT, poll_frequency=0.25).until(
        attempt, message=f"not shown within {PAGE_TIMEOUT:.0f} s: {what}"
    )


def click(driver: WebDriver, locator: tuple[str, str], what: str) -> None:
    """Click the element at `locator` once it exists, finding it again if the page re-rendered
    it between the find and the click (a stale element was not clicked)."""

    def attempt(d: WebDriver) -> bool:
        d.find_element(*locator).click()
        return True

    wait_for(driver, attempt, what)


def mark_community_dialog_seen(dagster_home: Path) -> None:
    """Store, before `dagster dev` starts, that this instance has shown the "Join the Dagster
    community" dialog, as its "Skip" button does (`dagster._core.nux`: the file's existence is
    what counts). A fresh instance otherwise shows it over the first page a second after the
    page renders, and the tests had to wait for it or for a timeout."""
    nux = dagster_home / ".nux"
    nux.mkdir(exist_ok=True)
    (nux / "nux.yaml").write_text("seen: 1\n")


def by_text(text: str, tag: str = "*") -> tuple[str, str]:
    """A locator of the `tag` elements whose text is exactly `text`; for any tag, the innermost
    such element (React often splits a label such as "Checks (8)" into several text nodes, so
    the text is compared whole rather than node by node)."""
    test = f"normalize-space(.)={_xpath_literal(text)}"
    innermost = f" and not(*[{test}])" if tag == "*" else ""
    return By.XPATH, f"//{tag}[{test}{innermost}]"


def by_text_prefix(prefix: str) -> tuple[str, str]:
    """A locator of the innermost elements whose text starts with `prefix`."""
    test = f"starts-with(normalize-space(.), {_xpath_literal(prefix)})"
    return By.XPATH, f"//*[{test} and not(*[{test}])]"


def _xpath_literal(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    return "concat('" + "', \"'\", '".join(text.split("'")) + "')"


def table_rows(table: WebElement) -> list[list[str]]:
    """The cells' visible text of every body row of an HTML table. `:scope` matters: a table
    nested in another one's cell (a markdown table in the metadata table) would otherwise count
    its header row, which sits under the outer table's tbody."""
    return [
        [cell.text.strip() for cell in row.find_elements(By.CSS_SELECTOR, ":scope > td")]
        for row in table.find_elements(By.CSS_SELECTOR, ":scope > tbody > tr")
    ]


def table_header(table: WebElement) -> list[str]:
    """The header cells' visible text of an HTML table."""
    cells = table.find_elements(By.CSS_SELECTOR, ":scope > thead > tr > :is(th, td)")
    return [cell.text.strip() for cell in cells]


def table_with_header(driver: WebDriver, first_header: str) -> WebElement | None:
    """The table whose first header cell reads `first_header` (the UI's tables have no ids)."""
    for table in driver.find_elements(By.TAG_NAME, "table"):
        header = table_header(table)
        if header and header[0] == first_header:
            return table
    return None


def image_size(driver: WebDriver, image: WebElement) -> tuple[int, int]:
    """The decoded size of an <img>: (0, 0) while it loads or when it is broken."""
    return tuple(
        driver.execute_script(
            "const i = arguments[0]; return i.complete ? [i.naturalWidth, i.naturalHeight] : [0, 0];",
            image,
        )
    )


@contextlib.contextmanager
def evidence_on_failure(driver: WebDriver, folder: Path, name: str) -> Iterator[None]:
    """On any failure inside the block, keep a screenshot and the page's text in `folder` (the
    test's pytest temp folder) and say where, then let the failure through."""
    try:
        yield
    except BaseException as failure:
        folder.mkdir(parents=True, exist_ok=True)
        shot, text = folder / f"{name}.png", folder / f"{name}.txt"
        with contextlib.suppress(WebDriverException):
            driver.save_screenshot(str(shot))
            text.write_text(
                f"{driver.current_url}\n\n{driver.find_element(By.TAG_NAME, 'body').text}"
            )
        failure.add_note(f"UI evidence: {shot} and {text}")
        raise
