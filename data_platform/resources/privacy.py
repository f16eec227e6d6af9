"""The salt that hashes personal data (e-mail addresses) past staging.

Set DATA_PLATFORM_PII_SALT in production. Without it, a random salt is generated once and kept
in DATA_PLATFORM_HOME, so hashes stay stable across runs on one machine and no salt sits in code.
The resource holds the file's path, not the salt: resource config is shown in the UI, and a
salt in clear there opens every e-mail hash to a dictionary attack.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import dagster as dg

SALT_FILE = "pii_salt"


class SaltError(RuntimeError):
    """The salt file cannot be used; the message is one actionable line."""


def local_pii_salt(path: Path) -> str:
    """The machine-local salt in `path`, created on first use (readable by its owner only).

    Created complete or not at all: written to a private temp file, then linked into place, which
    fails if another process got there first (its salt is then the one). Creating it in place
    let concurrent first uses read it empty or each keep its own salt."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".pii_salt-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
            os.link(temp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temp)
    salt = path.read_text().strip()
    if not salt:
        raise SaltError(
            f"{path} is empty: restore it from a backup (hashes made with another salt no longer "
            "match), or delete it to start a new salt, or set DATA_PLATFORM_PII_SALT"
        )
    return salt


class Privacy(dg.ConfigurableResource):
    """The PII salt: dg.EnvVar("DATA_PLATFORM_PII_SALT") when the environment provides one, else
    read from `salt_file` (created on first use) when a run needs it."""

    pii_salt: str | None = None
    salt_file: str | None = None

    def salt(self) -> str:
        if self.pii_salt:
            return self.pii_salt
        if not self.salt_file:
            raise SaltError("no PII salt: set DATA_PLATFORM_PII_SALT")
        return local_pii_salt(Path(self.salt_file))
