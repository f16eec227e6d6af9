"""`python -m data_platform.services up|down|env|status|packages`: what the make targets call.

SERVICES (space-separated names) picks a subset; the default is every service but the opt-in
ones (kafka, spark), which `down` without SERVICES stops too when they run. `env` exports the
variables of the services that run (among those SERVICES names, if set). `packages` prints the
apt packages the selected services need and this machine lacks, on one line (`--all`: every
service's and the test suite's, whatever SERVICES says). Exit status 1
with one line naming the service and its log when a service does not come up, 2 for a wrong
setting; `status` exits 3 when a service it lists is down (LSB's "not running"), so that a
script can test it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence

from data_platform.services.base import Service, check_ports, start
from data_platform.services.config import ServicesConfig, load_services_config
from data_platform.services.instance import write_instance_yaml
from data_platform.services.lock import exclusive
from data_platform.services.packages import missing_packages
from data_platform.services.process import ServiceError
from data_platform.services.registry import (
    SERVICE_NAMES,
    build_services,
    parse_selection,
    running_env,
    running_opt_in,
)
from data_platform.settings import SettingsError


def _up(config: ServicesConfig, services: Sequence[Service]) -> None:
    check_ports(services)
    write_instance_yaml(config)
    for service in services:
        began = time.monotonic()
        start(service)
        print(f"{service.name}: up ({time.monotonic() - began:.1f} s)", file=sys.stderr)


def _named_or_running(config: ServicesConfig, names: Sequence[str], selected: bool) -> list[str]:
    """The services SERVICES named; when it named none (`selected` false), the default ones
    and every opt-in one with processes left."""
    if selected:
        return list(names)
    return [*names, *(name for name in running_opt_in(config) if name not in names)]


def _down(config: ServicesConfig, names: Sequence[str], selected: bool) -> None:
    """Stop the named services and, when SERVICES named none (`selected` false), every opt-in
    one that runs. Called with the lock held: an `up` this `down` waited for (`SERVICES=spark`) has
    only now started what it started, and a list read before the wait missed it."""
    names = _named_or_running(config, names, selected)
    # Reverse order: workers first, so that none loses its broker or instance mid-step.
    for service in reversed(build_services(config, names)):
        service.stop()
        print(f"{service.name}: down", file=sys.stderr)


# `status`'s exit when a listed service is down.
STATUS_SOME_DOWN = 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_platform.services", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "env", "status", "packages"])
    parser.add_argument(
        "--all", action="store_true", help="packages: every service's and the test suite's"
    )
    args = parser.parse_args(argv)
    try:
        names = parse_selection(os.environ.get("SERVICES"))
        if args.action == "packages":
            print(" ".join(missing_packages(SERVICE_NAMES if args.all else names, args.all)))
            return 0
        config = load_services_config()
        selected = bool(os.environ.get("SERVICES", "").strip())
        if args.action == "env":
            # What runs among the named services, or among all when none is named.
            candidates = names if selected else SERVICE_NAMES
            exports, warnings = running_env(config, candidates)
            for warning in warnings:
                print(f"services: {warning}", file=sys.stderr)
            for name, value in exports.items():
                print(f"export {name}={shlex.quote(value)}")
        elif args.action == "status":
            # A cluster or broker half dead was reported by no one without SERVICES.
            listed = _named_or_running(config, names, selected)
            up = {service.name: service.is_up() for service in build_services(config, listed)}
            for name, answers in up.items():
                print(f"{name}: {'up' if answers else 'down'}")
            if not all(up.values()):
                return STATUS_SOME_DOWN
        else:
            # One up or down at a time in this home (services/lock.py): both check, then start.
            # Whatever they read of what runs is read inside, the command waited for done.
            with exclusive(config, args.action):
                if args.action == "up":
                    _up(config, build_services(config, names))
                else:
                    _down(config, names, selected)
    except SettingsError as err:
        print(f"services: {err}", file=sys.stderr)
        return 2
    except ServiceError as err:
        print(f"services: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        # Left uncaught, a home made by root (`sudo make services-up`) and used by its owner
        # was a 20-line traceback.
        print(f"services: {err}: {_os_error_advice(err)}", file=sys.stderr)
        return 1
    return 0


def _os_error_advice(err: OSError) -> str:
    """What to do about an error of the system: one naming a path is the disk's (denied, full,
    a file in a folder's place); any other (a refused connection, a socket) is no disk's, and
    "free space" sent a person to the wrong place."""
    if err.filename is not None:
        return "fix it (permissions, free space), then run it again"
    return "see `make services-status` and the services' logs, then run it again"


if __name__ == "__main__":
    sys.exit(main())
