"""Rating throughput, with its raw ceilings, in one run (figures for the report; not a test).

    uv run python services/billing/tests/perf/measure_rating.py [--events 200000]

1. produce N usage events (keyed by allocation) to a fresh 12-partition topic;
2. ceiling A, bare consumer: aiokafka getmany over the whole topic, envelope parsed;
3. ceiling B, PostgreSQL without Kafka: the same transfer rows inserted by the rating
   statement (ON CONFLICT DO NOTHING + one balance update per account per batch), nothing
   else; and, for the breakdown, the whole rating use case without Kafka (decode, price,
   split, insert, balances, standings);
4. end to end: platformkit's BatchConsumer + billing's UsageRater into a third database,
   from the first batch to the last committed offset (the group join is reported apart).
Prints one JSON object.
"""

import argparse
import asyncio
import datetime as dt
import json
import time
import uuid

import msgspec
import psycopg
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from billing.app.funds import add_price
from billing.app.rating import UsageRater
from billing.bootstrap import DEFINITION
from billing.domain.ledger import (
    AccountKind,
    Transfer,
    TransferKind,
    platform_account_id,
    wallet_id,
)
from billing.domain.pricing import PriceVersion
from billing.settings import BillingSettings
from billing.store.ledger import LedgerRepository, TransferColumns
from devstack.infra import ensure_infra
from gpucloud_contracts.events.metering import UsageRecorded
from platformkit.batch_consumers import BatchConsumer, BatchSubscription
from platformkit.db import Database
from platformkit.envelope import from_kafka, new_event
from platformkit.kafka import idempotent_producer
from platformkit.service import migrate
from platformkit.settings import ServiceSettings

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def make_events(n: int, tenants: int, allocations: int):
    tenant_ids = [uuid.uuid4() for _ in range(tenants)]
    allocs = [(uuid.uuid4(), tenant_ids[i % tenants]) for i in range(allocations)]
    seqs = [0] * allocations
    events = []
    for i in range(n):
        a = i % allocations
        allocation, tenant = allocs[a]
        seq = seqs[a]
        seqs[a] += 1
        start = T0 + dt.timedelta(minutes=seq)
        payload = UsageRecorded(
            interval_id=uuid.uuid5(allocation, str(seq)),
            allocation_id=allocation,
            tenant_id=tenant,
            project_id=tenant,
            sequence=seq,
            sku="h100",
            price_key="gpu:h100",
            quantity=1,
            started_at=start,
            ended_at=start + dt.timedelta(seconds=60),
            duration_ms=60_000,
            final=False,
        )
        events.append(
            new_event(
                type="metering.usage.recorded",
                source="gpuaas",
                subject=str(allocation),
                tenant=str(tenant),
                payload=msgspec.json.encode(payload),
            )
        )
    return events


def new_database(admin_url: str) -> str:
    name = f"perf_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rpartition("/")[0]
    url = f"{base}/{name}"
    migrate(DEFINITION, ServiceSettings("billing", database_url=url))
    return url


def drop_database(admin_url: str, url: str) -> None:
    name = url.rpartition("/")[2]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def priced(url: str) -> Database:
    db = Database(url, pool_size=2)
    async with db.unit_of_work() as uow:
        await add_price(uow, PriceVersion("gpu:h100", "USD", 3_600_000, T0))
        await uow.commit()
    return db


async def bare_consumer(bootstrap: str, topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    seen, started = 0, None
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            if started is None and batch:
                started = time.perf_counter()
            for records in batch.values():
                for record in records:
                    from_kafka(record.headers, record.value)
                seen += len(records)
    finally:
        await consumer.stop()
    return n / (time.perf_counter() - (started or time.perf_counter()))


async def rating_without_kafka(url: str, events, batch: int) -> float:
    db = await priced(url)
    rater = UsageRater(BillingSettings())
    started = time.perf_counter()
    for i in range(0, len(events), batch):
        async with db.unit_of_work() as uow:
            await rater(events[i : i + batch], uow)
            await uow.commit()
    elapsed = time.perf_counter() - started
    await db.dispose()
    assert rater.stats.rated == len(events), rater.stats
    return len(events) / elapsed


async def insert_only(url: str, events, batch: int) -> float:
    """The same transfer rows (one per interval, wallet -> revenue) inserted with the rating
    statement (ON CONFLICT DO NOTHING + balance update), no decoding, pricing or standings."""
    db = await priced(url)
    usages = [msgspec.json.decode(e.data, type=UsageRecorded) for e in events]
    tenants = sorted({u.tenant_id for u in usages})
    async with db.unit_of_work() as uow:
        await LedgerRepository(uow).open_tenants(tenants, "USD", 0)
        await uow.commit()
    revenue = platform_account_id(AccountKind.REVENUE, "USD")
    batches = []
    for i in range(0, len(usages), batch):
        columns = TransferColumns()
        for u in usages[i : i + batch]:
            columns.add(
                Transfer(
                    u.interval_id,
                    u.interval_id,
                    wallet_id(u.tenant_id, "USD"),
                    revenue,
                    60_000,
                    "USD",
                    TransferKind.USAGE,
                    u.tenant_id,
                    u.ended_at,
                ),
                project_id=u.project_id,
                allocation_id=u.allocation_id,
                price_key=u.price_key,
                quantity=u.quantity,
                billable_seconds=60,
            )
        batches.append(columns)
    started = time.perf_counter()
    for columns in batches:
        async with db.unit_of_work() as uow:
            await LedgerRepository(uow).post(columns)
            await uow.commit()
    elapsed = time.perf_counter() - started
    await db.dispose()
    return len(usages) / elapsed


async def end_to_end(url: str, bootstrap: str, topic: str, n: int, batch: int) -> dict:
    db = await priced(url)
    producer = idempotent_producer(bootstrap, "perf")
    await producer.start()
    rater = UsageRater(BillingSettings())
    consumer = BatchConsumer(
        BatchSubscription("perf-rating", (topic,), rater, max_records=batch, max_wait_ms=50),
        service=f"perf-{uuid.uuid4().hex[:6]}",
        db=db,
        producer=producer,
        bootstrap=bootstrap,
    )
    joined = time.perf_counter()
    await consumer.start()
    first = None
    try:
        while rater.stats.rated + rater.stats.duplicates < n or await consumer.lag() != 0:
            if first is None and consumer.batches:
                first = (time.perf_counter(), rater.stats.rated)
            await asyncio.sleep(0.01)
        done = time.perf_counter()
    finally:
        await consumer.stop()
        await producer.stop()
        await db.dispose()
    assert first is not None
    return {
        "events_per_s": round((n - first[1]) / (done - first[0])),
        "join_s": round(first[0] - joined, 2),
        "batches": consumer.batches,
        "rated": rater.stats.rated,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--allocations", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    infra = ensure_infra()
    bootstrap = infra.kafka_bootstrap
    topic = f"perf.{uuid.uuid4().hex[:8]}.v1"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 12, 1), NewTopic(topic + ".dlq", 1, 1)])
    urls = [new_database(infra.pg_admin_url) for _ in range(3)]
    try:
        events = make_events(args.events, args.tenants, args.allocations)
        producer = idempotent_producer(bootstrap, "perf")
        await producer.start()
        started = time.perf_counter()
        futures = [
            await producer.send(topic, value=e.data, key=e.key, headers=e.headers()) for e in events
        ]
        await asyncio.gather(*futures)
        produce_rate = args.events / (time.perf_counter() - started)
        await producer.stop()

        kafka_ceiling = await bare_consumer(bootstrap, topic, args.events)
        insert_ceiling = await insert_only(urls[2], events, args.batch)
        pg_ceiling = await rating_without_kafka(urls[0], events, args.batch)
        e2e = await end_to_end(urls[1], bootstrap, topic, args.events, args.batch)
        lower = min(kafka_ceiling, insert_ceiling)
        print(
            json.dumps(
                {
                    "events": args.events,
                    "tenants": args.tenants,
                    "batch": args.batch,
                    "produce_per_s": round(produce_rate),
                    "ceiling_bare_consumer_per_s": round(kafka_ceiling),
                    "ceiling_postgres_insert_only_per_s": round(insert_ceiling),
                    "rating_without_kafka_per_s": round(pg_ceiling),
                    "end_to_end": e2e,
                    "ratio_to_lower_ceiling": round(e2e["events_per_s"] / lower, 2),
                },
                indent=2,
            )
        )
    finally:
        for url in urls:
            drop_database(infra.pg_admin_url, url)
        await admin.delete_topics([topic, topic + ".dlq"])
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
