"""The Idempotency-Key runner on real PostgreSQL: one execution per key (also when two
identical requests race), the stored response replayed, another body refused, nothing
stored when the work fails."""

import asyncio
import uuid

import psycopg
import pytest

from platformkit.db import Database
from platformkit.errors import IdempotencyMismatch
from platformkit.idempotency import IdempotentRequest, StoredResponse, lookup, run_once

pytestmark = pytest.mark.integration


def _effects(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT count(*) FROM effects").fetchone()[0]


def _work(started: asyncio.Event | None = None, hold: float = 0.0):
    async def work(uow):
        event_id = uuid.uuid4()
        await uow.execute("INSERT INTO effects (event_id) VALUES (:id)", {"id": event_id})
        if started is not None:
            started.set()
        await asyncio.sleep(hold)  # still inside the transaction
        return event_id

    return work


def _encode(event_id: uuid.UUID) -> StoredResponse:
    return StoredResponse(201, str(event_id).encode())


@pytest.fixture
async def db(kit_database):
    database = Database(kit_database)
    yield database
    await database.dispose()


async def test_same_key_runs_once_and_replays_another_body_is_refused(db, kit_database):
    request = IdempotentRequest.of("tests.things", "k-1", {"n": 1})
    first = await run_once(db, request, _work(), _encode)
    again = await run_once(db, request, _work(), _encode)
    assert (first.status, first.body, first.replayed) == (201, first.body, False)
    assert again == StoredResponse(201, first.body, replayed=True)
    assert await lookup(db, request) == again
    assert _effects(kit_database) == 1
    with pytest.raises(IdempotencyMismatch):
        await run_once(db, IdempotentRequest.of("tests.things", "k-1", {"n": 2}), _work(), _encode)
    # the same key in another scope is another request
    other = await run_once(
        db, IdempotentRequest.of("tests.others", "k-1", {"n": 2}), _work(), _encode
    )
    assert not other.replayed and _effects(kit_database) == 2


async def test_concurrent_identical_requests_execute_once(db, kit_database):
    request = IdempotentRequest.of("tests.race", "k-race", {"n": 1})
    started = asyncio.Event()
    first = asyncio.create_task(run_once(db, request, _work(started, hold=0.5), _encode))
    await started.wait()  # the first holds its transaction (and the key's lock)
    second = await run_once(db, request, _work(), _encode)
    replies = [await first, second]
    assert replies[1].replayed and replies[0].body == replies[1].body
    assert _effects(kit_database) == 1


async def test_failed_work_stores_nothing_and_a_retry_runs(db, kit_database):
    request = IdempotentRequest.of("tests.fail", "k-fail", {"n": 1})

    async def failing(uow):
        await _work()(uow)
        raise RuntimeError("refused half way")

    with pytest.raises(RuntimeError):
        await run_once(db, request, failing, _encode)
    assert await lookup(db, request) is None and _effects(kit_database) == 0
    retried = await run_once(db, request, _work(), _encode)
    assert not retried.replayed and _effects(kit_database) == 1
    # without a key the work simply runs, every time
    for _ in range(2):
        assert not (await run_once(db, None, _work(), _encode)).replayed
    assert _effects(kit_database) == 3
