"""The application database (DATA_PLATFORM_SOURCE_DB_URL), read through SQLAlchemy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

if TYPE_CHECKING:
    import sqlalchemy as sa


class SourceDatabase(dg.ConfigurableResource):
    """Any SQLAlchemy URL; the default is a SQLite file in DATA_PLATFORM_HOME."""

    url: str

    _engine: Any = PrivateAttr(default=None)

    def engine(self) -> sa.Engine:
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
