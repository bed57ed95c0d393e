from collections.abc import AsyncIterator

import pytest

from platformkit.db import Database
from platformkit.migrate import apply_migrations
from platformkit.service import KIT_MIGRATIONS


@pytest.fixture
def audit_url(fresh_database: str) -> str:
    apply_migrations(fresh_database, [KIT_MIGRATIONS, ("audit", "audit.store.migrations")])
    return fresh_database


@pytest.fixture
async def db(audit_url: str) -> AsyncIterator[Database]:
    database = Database(audit_url, pool_size=4)
    yield database
    await database.dispose()
