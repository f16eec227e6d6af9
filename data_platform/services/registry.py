"""Every service by name, in start order; `SERVICES="postgres redis"` picks a subset."""

from __future__ import annotations

from collections.abc import Sequence

from data_platform.services.base import Service
from data_platform.services.config import ServicesConfig
from data_platform.services.postgres import Postgres
from data_platform.settings import SettingsError

SERVICE_NAMES = ("postgres",)


def parse_selection(raw: str | None) -> list[str]:
    """Names from a space- or comma-separated list, in start order; empty means all."""
    names = [n for n in (raw or "").replace(",", " ").split() if n]
    unknown = sorted(set(names) - set(SERVICE_NAMES))
    if unknown:
        raise SettingsError(
            f"SERVICES names unknown service(s) {', '.join(unknown)}: "
            f"choose among {' '.join(SERVICE_NAMES)}"
        )
    return [n for n in SERVICE_NAMES if n in names] if names else list(SERVICE_NAMES)


def build_services(config: ServicesConfig, names: Sequence[str]) -> list[Service]:
    factories = {"postgres": Postgres}
    return [factories[name](config) for name in names]
