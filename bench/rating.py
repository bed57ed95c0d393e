"""Rating benchmark: usage events rated per second end to end, with the raw ceilings.

One run, on a scratch topic (12 partitions) and scratch billing databases (migrated):

1. N `metering.usage.recorded` events (keyed by allocation, spread over tenants and
   allocations) are produced to the topic;
2. ceiling A, **bare consumer**: aiokafka `getmany` over the whole topic, each envelope
   parsed (the consumer engine's `parse_record`), nothing else;
3. ceiling B, **PostgreSQL insert-only**: the same transfer rows (one per interval, wallet
   -> revenue) inserted by billing's ledger statement (`LedgerRepository.post`: ON CONFLICT
   DO NOTHING + one balance update per account per batch), no Kafka, no decoding, pricing
   or standings;
4. breakdown, **rating without Kafka**: billing's whole `UsageRater` use case (decode,
   price, split, insert, balances, standings) on the same events, batch by batch;
5. **end to end**: billing's `rating` batch subscription (`UsageRater`) in the kit's
   `ServiceRuntime`, as billing's definition declares it, from the first batch to the last
   committed offset (the consumer group join is reported apart).

The headline is (5); its ratio to the lower of (2) and (3) says how much of the raw
capacity the pipeline uses. (4) and (5) also report the bench process's CPU time per event
(`time.process_time`: the Python side only, PostgreSQL's work is another process), a figure
much less sensitive to a busy shared machine than events per second. The process's GC is
tuned as billing's bootstrap tunes it (`GPUCLOUD_BILLING_GC_GEN0_THRESHOLD`, 0 = Python's
default) before the first stage.
"""

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from aiokafka.admin import NewTopic

from bench.common import (
    bench_kafka,
    environment,
    now,
    print_table,
    save_results,
    scratch_database,
)
from bench.report import Headline, Summary
from billing.app.funds import add_price
from billing.app.rating import UsageRater
from billing.bootstrap import DEFINITION, tune_gc
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
from platformkit import kafka as kafka_clients
from platformkit.consumers import dlq_topic, parse_record
from platformkit.db import Database
from platformkit.envelope import CloudEvent, new_event
from platformkit.kafka import KafkaSettings
from platformkit.runtime import ServiceRuntime
from platformkit.service import migrate
from platformkit.settings import ServiceSettings

SUMMARY = "usage events rated/s end to end (Kafka -> consumer -> ledger) vs raw ceilings"
TARGET_EVENTS_PER_S = 25_000  # issue 16
TARGET_RATIO_TO_INSERT_ONLY = 0.8  # of the same run's insert-only ceiling (issue 16)
TARGET_CPU_US_PER_EVENT = 20.0  # Python side, end to end: what 2 cores allow (issue 16)
PARTITIONS = 12
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
PRICE_MICROS_PER_HOUR = 3_600_000  # 1,000 micros a second: 60,000 per one-minute interval


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=200_000, help="usage events (200000)")
    parser.add_argument("--tenants", type=int, default=500, help="distinct tenants (500)")
    parser.add_argument("--allocations", type=int, default=5_000, help="distinct allocations")
    parser.add_argument(
        "--batch",
        type=int,
        default=BillingSettings().rating_batch_size,
        help="records per batch (billing's rating_batch_size, 4000)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 20,000 events")


def make_events(n: int, tenants: int, allocations: int) -> list[CloudEvent]:
    """n one-minute usage intervals, round-robin over the allocations, as gpuaas emits them."""
    tenant_ids = [uuid.uuid4() for _ in range(tenants)]
    allocs = [(uuid.uuid4(), tenant_ids[i % tenants]) for i in range(allocations)]
    sequences = [0] * allocations
    events = []
    for i in range(n):
        a = i % allocations
        allocation, tenant = allocs[a]
        seq = sequences[a]
        sequences[a] += 1
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


@contextlib.asynccontextmanager
async def _usage_topic(kafka: KafkaSettings) -> AsyncIterator[str]:
    """A scratch usage topic and its dead-letter topic (the batch consumer's DLQ)."""
    topic = f"bench.{uuid.uuid4().hex[:10]}.v1"
    admin = kafka_clients.admin_client(kafka, "bench-rating")
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, PARTITIONS, 1), NewTopic(dlq_topic(topic), 1, 1)]
        )
        yield topic
    finally:
        with contextlib.suppress(Exception):
            await admin.delete_topics([topic, dlq_topic(topic)])
        await admin.close()


async def _priced(url: str) -> Database:
    """billing's database with one list price for the events' price key."""
    db = Database(url, pool_size=2)
    async with db.unit_of_work() as uow:
        await add_price(uow, PriceVersion("gpu:h100", "USD", PRICE_MICROS_PER_HOUR, T0))
        await uow.commit()
    return db


async def produce(kafka: KafkaSettings, topic: str, events: list[CloudEvent]) -> float:
    producer = kafka_clients.producer(kafka, "bench-rating")
    await producer.start()
    try:
        started = now()
        acks = [
            await producer.send(topic, value=e.data, key=e.key, headers=e.headers()) for e in events
        ]
        await asyncio.gather(*acks)
        return len(events) / (now() - started)
    finally:
        await producer.stop()


async def bare_consumer(kafka: KafkaSettings, topic: str, n: int) -> float:
    """Ceiling A: read and parse every record, from the first fetched batch to the last."""
    consumer = kafka_clients.consumer(  # the engine's fetch sizes, no group
        kafka,
        topic,
        client_id="bench-rating",
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
                started = now()
            for records in batch.values():
                for record in records:
                    parse_record(record.headers, record.value)
                seen += len(records)
    finally:
        await consumer.stop()
    return n / (now() - (started or now()))


async def insert_only(url: str, events: list[CloudEvent], batch: int) -> float:
    """Ceiling B: the same transfer rows inserted by the ledger statement, one transaction
    per batch; the rows are built before the clock starts."""
    db = await _priced(url)
    usages = [msgspec.json.decode(e.data, type=UsageRecorded) for e in events]
    async with db.unit_of_work() as uow:
        await LedgerRepository(uow).open_tenants(sorted({u.tenant_id for u in usages}), "USD", 0)
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
    try:
        started = now()
        for columns in batches:
            async with db.unit_of_work() as uow:
                await LedgerRepository(uow).post(columns)
                await uow.commit()
        return len(usages) / (now() - started)
    finally:
        await db.dispose()


async def rating_without_kafka(url: str, events: list[CloudEvent], batch: int) -> dict[str, Any]:
    """Breakdown: billing's whole rating use case, batch by batch, no Kafka."""
    db = await _priced(url)
    rater = UsageRater(BillingSettings())
    try:
        started, cpu = now(), time.process_time()
        for i in range(0, len(events), batch):
            async with db.unit_of_work() as uow:
                await rater(rater.prepare(events[i : i + batch]), uow)
                await uow.commit()
        elapsed, cpu = now() - started, time.process_time() - cpu
    finally:
        await db.dispose()
    if rater.stats.rated != len(events):
        raise RuntimeError(f"rated {rater.stats.rated} of {len(events)}: {rater.stats}")
    return {
        "events_per_s": round(len(events) / elapsed),
        "cpu_us_per_event": round(cpu / len(events) * 1e6, 1),
    }


async def end_to_end(
    url: str, kafka: KafkaSettings, topic: str, n: int, batch: int
) -> dict[str, Any]:
    """The headline: billing's rating batch subscription (UsageRater) run by the kit's
    ServiceRuntime as billing's definition declares it, until every event is rated and the
    group's lag is 0 (offsets committed)."""
    await (await _priced(url)).dispose()
    rater = UsageRater(BillingSettings())
    (rating,) = DEFINITION.batch_subscriptions
    definition = dataclasses.replace(
        DEFINITION,
        subscriptions=(),
        batch_subscriptions=[
            dataclasses.replace(rating, topics=(topic,), handle=rater, max_records=batch)
        ],
        jobs=(),
        relay=False,
    )
    settings = ServiceSettings(
        f"bench-{uuid.uuid4().hex[:6]}",
        kafka=kafka,
        database_url=url,
        heartbeat_interval_s=0,
    )
    runtime = ServiceRuntime(definition, settings)
    (consumer,) = runtime.consumers
    joining = now()
    await runtime.start()
    first: tuple[float, int, float] | None = None
    try:
        while rater.stats.rated + rater.stats.duplicates < n or await consumer.lag() != 0:
            if first is None and consumer.batches:
                # the rate counts from the first batch
                first = (now(), rater.stats.rated, time.process_time())
            await asyncio.sleep(0.01)
        done, cpu_done = now(), time.process_time()
    finally:
        await runtime.stop()
    if first is None:
        raise RuntimeError("the consumer finished before a batch was seen")
    return {
        "events_per_s": round((n - first[1]) / (done - first[0])),
        "cpu_us_per_event": round((cpu_done - first[2]) / (n - first[1]) * 1e6, 1),
        "join_s": round(first[0] - joining, 2),
        "batches": consumer.batches,
        "rated": rater.stats.rated,
        "duplicates": rater.stats.duplicates,
    }


def _new_billing_database(stack: contextlib.ExitStack, admin_url: str) -> str:
    url = stack.enter_context(scratch_database(admin_url))
    migrate(DEFINITION, ServiceSettings("billing", database_url=url))
    return url


async def _run(args: argparse.Namespace, kafka: KafkaSettings, urls: list[str]) -> dict[str, Any]:
    gc_threshold = BillingSettings.from_env().gc_gen0_threshold
    tune_gc(gc_threshold)
    print(
        f"rating: {args.events:,} events, {args.tenants} tenants, batch {args.batch},"
        f" gc gen0 threshold {gc_threshold or 'default'} ..."
    )
    events = make_events(args.events, args.tenants, args.allocations)
    async with _usage_topic(kafka) as topic:
        produce_rate = await produce(kafka, topic, events)
        print("  produced; bare consumer ...")
        kafka_ceiling = await bare_consumer(kafka, topic, args.events)
        print("  PostgreSQL insert-only ...")
        insert_ceiling = await insert_only(urls[0], events, args.batch)
        print("  rating without Kafka ...")
        no_kafka = await rating_without_kafka(urls[1], events, args.batch)
        print("  end to end ...")
        e2e = await end_to_end(urls[2], kafka, topic, args.events, args.batch)
    lower = min(kafka_ceiling, insert_ceiling)
    return {
        "produce_per_s": round(produce_rate),
        "ceiling_bare_consumer_per_s": round(kafka_ceiling),
        "ceiling_postgres_insert_only_per_s": round(insert_ceiling),
        "gc_gen0_threshold": gc_threshold,
        "rating_without_kafka_per_s": no_kafka["events_per_s"],
        "rating_without_kafka_cpu_us_per_event": no_kafka["cpu_us_per_event"],
        "end_to_end": e2e,
        "lower_ceiling": "bare consumer" if kafka_ceiling <= insert_ceiling else "insert-only",
        "ratio_to_lower_ceiling": round(e2e["events_per_s"] / lower, 2),
    }


def main(args: argparse.Namespace) -> int:
    if args.quick:
        args.events = 20_000
    infra = ensure_infra()
    results: dict[str, Any] = {
        "benchmark": "rating",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": vars(args),
        "environment": environment(),
        "partitions": PARTITIONS,
    }
    with contextlib.ExitStack() as stack:
        urls = [_new_billing_database(stack, infra.pg_admin_url) for _ in range(3)]
        results.update(asyncio.run(_run(args, bench_kafka(infra), urls)))
    results["environment"]["load_average_1m_end"] = os.getloadavg()[0]
    rate = results["end_to_end"]["events_per_s"]
    ratio = rate / results["ceiling_postgres_insert_only_per_s"]
    results["target"] = {
        "events_per_s": TARGET_EVENTS_PER_S,
        "ratio_to_insert_only": TARGET_RATIO_TO_INSERT_ONLY,
        "met": rate >= TARGET_EVENTS_PER_S and ratio >= TARGET_RATIO_TO_INSERT_ONLY,
    }
    _report(results)
    print(f"\nresults: {save_results('rating', results)}")
    return 0


def _report(r: dict[str, Any]) -> None:
    e2e, env = r["end_to_end"], r["environment"]
    print(
        f"\nhost: {env['cpus']} CPUs, load average {env['load_average_1m']:.2f} before,"
        f" {env['load_average_1m_end']:.2f} after"
    )
    print_table(
        f"rating, {r['args']['events']:,} events, batch {r['args']['batch']} (events/s)",
        ["stage", "events/s"],
        [
            ["end to end (rating subscription + UsageRater)", e2e["events_per_s"]],
            ["ceiling: bare consumer (read + parse)", r["ceiling_bare_consumer_per_s"]],
            [
                "ceiling: PostgreSQL insert-only (same rows)",
                r["ceiling_postgres_insert_only_per_s"],
            ],
            ["rating without Kafka (whole use case)", r["rating_without_kafka_per_s"]],
            ["(producing the events)", r["produce_per_s"]],
        ],
    )
    print_table(
        "end to end",
        ["figure", "value"],
        [
            [f"ratio to the lower ceiling ({r['lower_ceiling']})", r["ratio_to_lower_ceiling"]],
            [
                "batches / rated / duplicates",
                f"{e2e['batches']} / {e2e['rated']:,} / {e2e['duplicates']}",
            ],
            ["consumer group join (s, not counted)", e2e["join_s"]],
            ["Python CPU per event, end to end (µs)", e2e["cpu_us_per_event"]],
            [
                "Python CPU per event, rating without Kafka (µs)",
                r["rating_without_kafka_cpu_us_per_event"],
            ],
            ["GC gen0 threshold (0: Python's default)", r["gc_gen0_threshold"]],
            [
                f"target: >= {TARGET_EVENTS_PER_S:,} events/s and"
                f" >= {TARGET_RATIO_TO_INSERT_ONLY} x insert-only",
                "met" if r["target"]["met"] else "NOT met",
            ],
        ],
    )


def headlines(results: dict[str, Any]) -> Summary:
    """The common schema (bench/report.py): end to end against the insert-only ceiling of
    the same run (the issue's >= 0.8) and the target rate; Python CPU per event."""
    e2e = results["end_to_end"]
    return Summary(
        headlines=[
            Headline(
                "end to end",
                e2e["events_per_s"],
                "events/s",
                baseline=results["ceiling_postgres_insert_only_per_s"],
                baseline_name="insert-only ceiling",
                target=TARGET_EVENTS_PER_S,
                ratio_target=TARGET_RATIO_TO_INSERT_ONLY,
            ),
            Headline(
                "Python CPU per event, end to end",
                e2e["cpu_us_per_event"],
                "µs",
                better="lower",
                target=TARGET_CPU_US_PER_EVENT,
            ),
        ]
    )
