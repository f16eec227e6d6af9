"""dbt-duckdb plugin: the PII salt as a DuckDB variable of dbt's own connections.

The e-mail hash once inlined the salt into the model's SQL, and dbt writes that SQL everywhere:
target/compiled, target/run, manifest.json, dbt.log, and (through `env_var`) the value itself into
partial_parse.msgpack. Here the salt goes from dbt's environment straight into each DuckDB
connection dbt opens (`SET VARIABLE`, the value bound as a parameter), never through Jinja or a
statement dbt sees, so the compiled SQL holds only `getvariable('data_platform_pii_salt')` (see
dbt/macros/hash_email.sql). Not the profile's `settings`: dbt logs a DuckDB profile's settings
with its connection keys. Not an `on-run-start` hook: its SQL is compiled and logged too.

dbt imports this module by name (profiles.yml, `plugins`); nothing of the platform imports it.
"""

from __future__ import annotations

import os

from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb import DuckDBPyConnection

SALT_ENV = "DATA_PLATFORM_PII_SALT"
# The macro pii_salt() reads this variable; keep both names equal.
SALT_VARIABLE = "data_platform_pii_salt"


def set_salt_variable(conn: DuckDBPyConnection) -> None:
    """Give `conn` the salt of dbt's environment, if any.

    Unset or blank, nothing is set, and a model that hashes fails on its first row with the
    macro's own message: a run of the staging views alone does not need the secret.
    """
    salt = os.environ.get(SALT_ENV, "")
    if salt.strip():
        conn.execute(f"SET VARIABLE {SALT_VARIABLE} = ?", [salt])


class Plugin(BasePlugin):
    """DuckDB variables belong to one connection, and dbt-duckdb runs each thread on a cursor
    (a connection of its own) of the first: both get the variable."""

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        set_salt_variable(conn)

    def configure_cursor(self, cursor: DuckDBPyConnection) -> None:
        set_salt_variable(cursor)
