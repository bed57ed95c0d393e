"""An incremental reader of a tenant's ledger (`GET .../ledger?after=`) sees every transfer,
even while several writers on several connections commit concurrently: the position it
pages by must grow in commit order, which an IDENTITY with a per-connection CACHE does not."""

import asyncio
import uuid

import pytest

from billing.app.funds import TopUp, top_up
from billing.app.queries import list_entries
from platformkit.db import Database

from .conftest import new_tenant

pytestmark = pytest.mark.integration

WRITERS = 4
TOP_UPS_EACH = 15


async def _write(db: Database, tenant: uuid.UUID, posted: set[uuid.UUID]) -> None:
    for _ in range(TOP_UPS_EACH):
        async with db.unit_of_work() as uow:
            transfer = await top_up(uow, TopUp(tenant, 1_000))
            await uow.commit()
        posted.add(transfer.id)
        await asyncio.sleep(0)


async def _read_new(db: Database, tenant: uuid.UUID, after: int, seen: list) -> int:
    while True:
        rows = await list_entries(db, tenant, after, 7)
        seen.extend(rows)
        if not rows:
            return after
        after = rows[-1]["seq"]


class TestIncrementalReader:
    async def test_a_reader_paging_during_concurrent_writes_sees_every_transfer(self, billing_url):
        writers_db = Database(billing_url, pool_size=WRITERS)
        reader_db = Database(billing_url, pool_size=1)
        try:
            tenant = await new_tenant(writers_db)
            posted: set[uuid.UUID] = set()
            seen: list = []
            writers = asyncio.gather(*(_write(writers_db, tenant, posted) for _ in range(WRITERS)))
            after = 0
            while not writers.done():
                after = await _read_new(reader_db, tenant, after, seen)
            await writers
            await _read_new(reader_db, tenant, after, seen)
        finally:
            await writers_db.dispose()
            await reader_db.dispose()

        ids = [r["id"] for r in seen]
        assert len(ids) == len(set(ids)), "a transfer was read twice"
        assert len(posted) == WRITERS * TOP_UPS_EACH
        assert set(ids) == posted, f"{len(posted - set(ids))} transfers never read"
        positions = [r["seq"] for r in seen]
        assert positions == sorted(positions)
