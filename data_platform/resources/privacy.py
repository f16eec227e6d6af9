"""The salt that hashes personal data (e-mail addresses) past staging.

Set DATA_PLATFORM_PII_SALT in production. Without it, a random salt is generated once and kept
in DATA_PLATFORM_HOME, so hashes stay stable across runs on one machine and no salt sits in code.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dagster as dg

SALT_FILE = "pii_salt"


def local_pii_salt(home: Path) -> str:
    """The machine-local salt, created on first use (readable by its owner only)."""
    path = home / SALT_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


class Privacy(dg.ConfigurableResource):
    """Holds the PII salt; built from dg.EnvVar when the environment provides one."""

    pii_salt: str
