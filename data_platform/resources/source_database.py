"""The application database (DATA_PLATFORM_SOURCE_DB_URL), read through SQLAlchemy."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from pydantic import PrivateAttr


class SourceDatabase(dg.ConfigurableResource):
    """Any SQLAlchemy URL; the default is a SQLite file in DATA_PLATFORM_HOME."""

    url: str

    _engine: sa.Engine | None = PrivateAttr(default=None)

    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = sa.create_engine(self.url)
        return self._engine
