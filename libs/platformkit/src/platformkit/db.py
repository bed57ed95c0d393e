"""Database access: one async engine per service, one unit of work per use case.

The unit of work wraps a sqlmodel AsyncSession on psycopg 3. It rolls back unless the
use case calls `commit()`, so an exception anywhere leaves nothing half-applied. Outbox
rows and inbox rows are written through the same session, which is what makes an event
and its cause (or an effect and its deduplication record) commit together or not at all.
"""

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession


def sqlalchemy_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"


class UnitOfWork:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.committed = False
        self._after_commit: list[Callable[[], Awaitable[None] | None]] = []

    async def execute(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        return await self.session.execute(text(sql), params or {})

    async def fetch_one(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        return (await self.execute(sql, params)).mappings().first()

    async def fetch_all(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        return list((await self.execute(sql, params)).mappings().all())

    def savepoint(self) -> Any:
        """`async with uow.savepoint():` a failure inside rolls back to here only, and the
        unit of work stays usable (e.g. to report a conflict after a refused insert)."""
        return self.session.begin_nested()

    def after_commit(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        self._after_commit.append(callback)

    async def commit(self) -> None:
        await self.session.commit()
        self.committed = True
        for callback in self._after_commit:
            result = callback()
            if result is not None:
                await result


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = libpq_url(url)
        self.engine: AsyncEngine = create_async_engine(
            sqlalchemy_url(url), pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800
        )

    @contextlib.asynccontextmanager
    async def unit_of_work(self, *, snapshot: bool = False) -> AsyncIterator[UnitOfWork]:
        """With `snapshot`, a read-only transaction that sees one consistent snapshot
        (REPEATABLE READ): reports whose totals must add up (statements, verification)."""
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            uow = UnitOfWork(session)
            if snapshot:
                await session.execute(text(_SNAPSHOT))
            try:
                yield uow
            finally:
                if not uow.committed:
                    await session.rollback()

    async def ping(self) -> bool:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()
