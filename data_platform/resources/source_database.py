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

            self._engine = sa.create_engine(self.url)
        return self._engine
