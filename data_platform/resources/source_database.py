"""The application database (DATA_PLATFORM_SOURCE_DB_URL), read through SQLAlchemy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import PrivateAttr

from data_platform.resources.run_pinned import RunPinnedResource, source_database_pin

if TYPE_CHECKING:
    import sqlalchemy as sa

# Seconds a connection to a PostgreSQL source may take to open (see `connect_args`).
CONNECT_TIMEOUT_SECONDS = 10


class SourceDatabase(RunPinnedResource):
    """Any SQLAlchemy URL; the default is a SQLite file in DATA_PLATFORM_HOME."""

    url: str

    _engine: Any = PrivateAttr(default=None)
    PIN = "source_database"

    @property
    def pin(self) -> str:
        return source_database_pin(self.url)

    def engine(self) -> sa.Engine:
        self.require_run_pin()
        if self._engine is None:
            # Imported on first use: not every Definitions load needs SQLAlchemy.
            import sqlalchemy as sa

            url = sa.engine.make_url(self.url)
            self._engine = sa.create_engine(url, connect_args=connect_args(url))
        return self._engine


def connect_args(url: sa.URL) -> dict[str, Any]:
    """What each connection to the source database is opened with, beyond its URL.

    PostgreSQL reads a naive timestamp in its session's TimeZone (initdb's default is the OS
    zone): the extraction's UTC bounds were read as local wall time and versions between them
    lost for good. The session is UTC, like the contract. And a connection gives up after
    CONNECT_TIMEOUT_SECONDS unless the URL says otherwise (`?connect_timeout=`): libpq waits
    for ever on a server that takes connections but does not answer (stopped, its disk hung),
    and every sensor tick then left a code-server thread waiting on it."""
    if url.get_backend_name() != "postgresql":
        return {}
    timeout = {} if "connect_timeout" in url.query else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    return {"options": "-c timezone=UTC", **timeout}
