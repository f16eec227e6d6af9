"""The application database (DATA_PLATFORM_SOURCE_DB_URL), read through SQLAlchemy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import PrivateAttr

from data_platform.resources.run_pinned import RunPinnedResource, source_database_pin

if TYPE_CHECKING:
    import sqlalchemy as sa


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

            # PostgreSQL reads a naive timestamp in its session's TimeZone (initdb's default
            # is the OS zone): the extraction's UTC bounds were read as local wall time and
            # versions between them lost for good. The session is UTC, like the contract.
            url = sa.engine.make_url(self.url)
            utc = {"options": "-c timezone=UTC"} if url.get_backend_name() == "postgresql" else {}
            self._engine = sa.create_engine(url, connect_args=utc)
        return self._engine
