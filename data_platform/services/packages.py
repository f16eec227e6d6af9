"""The Debian packages `make` installs, only those missing: each service's own, declared on its
class (`apt_packages`), for the services a command starts; plus, for `make test` and the
benchmarks, every service's and what only the suite uses.

`make services-up` installed everything the suite needs (chromium, Java, Prometheus...) whatever
SERVICES named: `SERVICES="postgres redis"` asked a developer with both for root and Java.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from data_platform.services.base import AptPackage
from data_platform.services.registry import SERVICE_CLASSES


def _executable(path: str) -> str | None:
    return path if os.access(path, os.X_OK) and Path(path).is_file() else None


# Used by the suite alone: the metrics tests scrape with Prometheus (promtool checks its rules),
# the UI tests drive chromium through its chromedriver at these paths (ui_harness.py).
SUITE_PACKAGES = (
    AptPackage("prometheus", lambda: shutil.which("promtool")),
    AptPackage("chromium", lambda: _executable("/usr/bin/chromium")),
    AptPackage("chromium-driver", lambda: _executable("/usr/bin/chromedriver")),
)


def apt_packages(names: Sequence[str], suite: bool = False) -> list[AptPackage]:
    """The packages the named services run from, plus the suite's when `suite`."""
    packages = [package for name in names for package in SERVICE_CLASSES[name].apt_packages]
    return packages + list(SUITE_PACKAGES if suite else ())


def missing_packages(names: Sequence[str], suite: bool = False) -> list[str]:
    """The names of those this machine lacks."""
    return [package.name for package in apt_packages(names, suite) if not package.present()]
