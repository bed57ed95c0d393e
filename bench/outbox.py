"""Outbox benchmark: commit-to-consumer latency at a steady rate, and relay throughput.

Part 1, latency. A writer commits one outbox event per transaction through platformkit
(`Database.unit_of_work()` + an outbox insert + `commit()`, like a request handler) at a
steady rate; the real `OutboxRelay.run()`, woken by LISTEN/NOTIFY, publishes them; a real
subscription run by the kit's `ServiceRuntime` (its `EventConsumer`: manual offset commit,
inbox dedup) applies them with a handler that writes one row. Per event, latency = when the
consumer's transaction committed minus when the writer's commit returned. Events scheduled
in the warm-up are left out.

Layout: the writer and the relay share this process, as in a service, where the relay is a
task of the same ServiceRuntime that serves the writes; the consumer runs in a child process,
as another service would. On a 2-core machine that also runs Kafka and PostgreSQL, one Python
process doing all three would measure its own event loop's queue as much as the pipeline.
`--single-process` runs everything in one event loop, for comparison.

Part 2, relay throughput. The outbox is pre-filled by COPY with N rows, then the real
`OutboxRelay.publish_batch` is called in a loop (what `run()` does while batches come back
full) until the backlog is 0. Baseline: a bare idempotent aiokafka producer (the kit's
settings: acks=all, linger 2 ms) sending the same values, keys and headers with no database,
once with every send in flight and once waiting for the acks every `batch_size` records, as
the relay does.
"""

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any, Protocol

import psycopg

from bench.common import (
    bench_kafka,
    environment,
    now,
    print_table,
    save_results,
    scratch_database,
    scratch_topic,
    summarize_ms,
)
from bench.report import Headline, Summary
from devstack.infra import ensure_infra
from platformkit import kafka as kafka_clients
from platformkit.consumers import Subscription
from platformkit.db import Database, UnitOfWork, libpq_url
from platformkit.definition import ServiceDefinition
from platformkit.envelope import CloudEvent, new_event
from platformkit.kafka import KafkaSettings
from platformkit.migrate import apply_migrations
from platformkit.outbox import write_events
from platformkit.relay import OutboxRelay
from platformkit.runtime import ServiceRuntime
from platformkit.service import KIT_MIGRATIONS
from platformkit.settings import ServiceSettings

SUMMARY = "outbox -> relay -> Kafka -> consumer: latency at a steady rate, relay throughput"
TARGET_P99_MS = 50.0
TARGET_RATE = 500.0
PARTITIONS = 6
AGGREGATES = 64  # distinct subjects (Kafka keys), so every partition gets traffic
EVENT_TYPE = "bench.instance.state_changed"
REPEATS = 3  # throughput rounds; the median is reported


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="events/s (500)")
    parser.add_argument("--seconds", type=float, default=20.0, help="latency run length (20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds left out (2)")
    parser.add_argument("--prefill", type=int, default=50_000, help="rows for throughput")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 s, 5,000 rows")
    parser.add_argument(
        "--single-process", action="store_true", help="run the consumer in this event loop too"
    )


def main(args: argparse.Namespace) -> int:
    if args.quick:
        args.seconds, args.prefill = 5.0, 5_000
    infra = ensure_infra()
    results: dict[str, Any] = {
        "benchmark": "outbox",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": vars(args),
        "environment": environment(),
    }
    with scratch_database(infra.pg_admin_url) as db_url:
        apply_migrations(db_url, [KIT_MIGRATIONS])
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE effects (event_id uuid, at timestamptz DEFAULT now())")
        results.update(asyncio.run(_run(args, db_url, bench_kafka(infra))))
    results["environment"]["load_average_1m_end"] = os.getloadavg()[0]
    p99 = results["latency"]["commit_to_applied"].get("p99_ms")
    results["target"] = {
        "p99_ms": TARGET_P99_MS,
        "rate": TARGET_RATE,
        "met": p99 is not None
        and p99 <= TARGET_P99_MS
        and results["latency"]["write_rate"] >= 0.95 * TARGET_RATE,
    }
    _report(results)
    print(f"\nresults: {save_results('outbox', results)}")
    return 0


async def _run(args: argparse.Namespace, db_url: str, kafka: KafkaSettings) -> dict[str, Any]:
    async with scratch_topic(kafka, PARTITIONS) as topic:
        latency = await measure_latency(
            db_url,
            kafka,
            topic,
            rate=args.rate,
            seconds=args.seconds,
            warmup=args.warmup,
            single_process=args.single_process,
        )
        throughput = await measure_throughput(db_url, kafka, topic, rows=args.prefill)
    return {"settings": latency.pop("settings"), "latency": latency, "throughput": throughput}


def _settings(relay: OutboxRelay, single_process: bool) -> dict[str, Any]:
    """The knobs the latency depends on, as the relay and its producer were really built."""
    producer = relay.producer
    accumulator = getattr(producer, "_message_accumulator", None)  # aiokafka internals
    return {
        "layout": "single process" if single_process else "writer+relay | consumer",
        "relay_batch_size": relay.batch_size,
        "relay_poll_interval_s": relay.poll_interval_s,
        "producer_acks": getattr(getattr(producer, "_sender", None), "_acks", None),
        "producer_linger_ms": getattr(accumulator, "_linger_time", 0) * 1000,
        "producer_max_batch_size": getattr(accumulator, "_batch_size", None),
        "partitions": PARTITIONS,
    }


# -- events -------------------------------------------------------------------------------


def event_fields(i: int) -> dict[str, Any]:
    """One realistic event (about 200 bytes of JSON) on one of AGGREGATES aggregates."""
    subject = f"inst_{i % AGGREGATES:04d}"
    return {
        "type": EVENT_TYPE,
        "source": "bench",
        "subject": subject,
        "tenant": "ten_bench",
        "payload": {
            "instance_id": subject,
            "tenant_id": "ten_bench",
            "state": "running" if i % 2 else "provisioning",
            "gpu_model": "H100-SXM5-80GB",
            "gpu_count": 8,
            "region": "eu-central-1",
            "sequence": i,
        },
    }


# -- part 1: latency ----------------------------------------------------------------------


class TimedRelay(OutboxRelay):
    """The real relay, unchanged; each batch's size and duration are noted on the way out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[tuple[int, float]] = []

    async def publish_batch(self, conn: psycopg.AsyncConnection[Any]) -> int:
        started = now()
        sent = await super().publish_batch(conn)
        self.batches.append((sent, now() - started))
        return sent


class ConsumerSide:
    """The consuming service: a real EventConsumer (inbox dedup, database commit before the
    offset commit) whose handler writes one row and stamps when its transaction committed."""

    def __init__(self, db_url: str, kafka: KafkaSettings, topic: str) -> None:
        self.applied: dict[str, tuple[float, float]] = {}  # id -> (handler entered, committed)
        self.expected: int | None = None
        self.all_applied = asyncio.Event()
        definition = ServiceDefinition(
            name="bench",
            version="0",
            description="the consuming service of the outbox bench",
            route_handlers=[],
            subscriptions=[Subscription(f"consumer-{topic}", (topic,), self.handle)],
            relay=False,
        )
        settings = ServiceSettings(
            "bench", kafka=kafka, database_url=db_url, heartbeat_interval_s=0
        )
        self.runtime = ServiceRuntime(definition, settings)
        self.consumer = self.runtime.consumers[0]
        self.started = (0.0, 0.0)  # (clock, process CPU) once ready
        self.closed = False

    async def handle(self, event: CloudEvent, uow: UnitOfWork) -> None:
        entered = now()
        await uow.execute("INSERT INTO effects (event_id) VALUES (:id)", {"id": event.id})
        uow.after_commit(lambda: self._applied(str(event.id), entered))

    def _applied(self, event_id: str, entered: float) -> None:
        self.applied[event_id] = (entered, now())
        if self.expected is not None and len(self.applied) >= self.expected:
            self.all_applied.set()

    async def start(self) -> None:
        """Returns once the group has its partitions, so no event waits for a rebalance."""
        await self.runtime.start()
        async with asyncio.timeout(30):
            while not self.consumer.assigned:  # noqa: ASYNC110 (aiokafka signals no assignment)
                await asyncio.sleep(0.05)
        self.started = (now(), time.process_time())

    async def finish(self, expected: int, wait_s: float) -> dict[str, Any]:
        """Wait until `expected` events are applied (or `wait_s`), stop, return the stamps."""
        try:
            self.expected = expected
            if len(self.applied) >= expected:
                self.all_applied.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_applied.wait(), wait_s)
            stopped_at, cpu = now(), time.process_time()
        finally:
            await self.close()
        return {
            "applied": self.applied,
            "stopped_at": stopped_at,
            "cpu_percent": round(100 * (cpu - self.started[1]) / (stopped_at - self.started[0]), 1),
            "duplicates": self.consumer.duplicates,
            "dead_lettered": self.consumer.dead_lettered,
        }

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.runtime.stop()


class ConsumerProcess:
    """ConsumerSide in a child process (spawned, so it shares nothing but the pipe)."""

    def __init__(self, db_url: str, kafka: KafkaSettings, topic: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child = context.Pipe()
        self.process = context.Process(
            target=_consumer_process, args=(db_url, kafka, topic, child), daemon=True
        )

    async def start(self) -> None:
        self.process.start()
        await asyncio.to_thread(self._receive, 90)

    async def finish(self, expected: int, wait_s: float) -> dict[str, Any]:
        self.pipe.send((expected, wait_s))
        outcome = await asyncio.to_thread(self._receive, wait_s + 30)
        await asyncio.to_thread(self.process.join, 10)
        return outcome

    async def close(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            await asyncio.to_thread(self.process.join, 10)

    def _receive(self, timeout: float) -> Any:
        if not self.pipe.poll(timeout):
            raise TimeoutError("the consumer process did not answer")
        return self.pipe.recv()


def _consumer_process(db_url: str, kafka: KafkaSettings, topic: str, pipe: Connection) -> None:
    async def serve() -> None:
        side = ConsumerSide(db_url, kafka, topic)
        try:
            await side.start()
            pipe.send("ready")
            expected, wait_s = await asyncio.to_thread(pipe.recv)
            pipe.send(await side.finish(expected, wait_s))
        finally:
            await side.close()

    asyncio.run(serve())


class Consumer(Protocol):
    async def start(self) -> None: ...
    async def finish(self, expected: int, wait_s: float) -> dict[str, Any]: ...
    async def close(self) -> None: ...


async def write_steadily(
    db: Database, topic: str, rate: float, seconds: float
) -> tuple[dict[str, tuple[float, float]], float]:
    """Open-loop writer: event i is due at start + i/rate and gets its own task, so a slow
    commit delays nobody else (as with concurrent requests). Returns id -> (due, committed)
    and the start time."""
    writes: dict[str, tuple[float, float]] = {}
    pending: set[asyncio.Task[None]] = set()

    async def write_one(i: int, due: float) -> None:
        async with db.unit_of_work() as uow:
            event = new_event(**event_fields(i))
            await write_events(uow, topic, [event])
            await uow.commit()
        writes[str(event.id)] = (due, now())

    start = now()
    for i in range(round(rate * seconds)):
        due = start + i / rate
        if (delay := due - now()) > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(write_one(i, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    return writes, start


async def measure_latency(
    db_url: str,
    kafka: KafkaSettings,
    topic: str,
    *,
    rate: float,
    seconds: float,
    warmup: float,
    single_process: bool,
) -> dict[str, Any]:
    print(f"latency: {rate:g} events/s for {seconds:g} s (first {warmup:g} s left out) ...")
    consumer: Consumer = (
        ConsumerSide(db_url, kafka, topic)
        if single_process
        else ConsumerProcess(db_url, kafka, topic)
    )
    db = Database(db_url)
    producer = kafka_clients.producer(kafka, "bench-relay")
    relay = TimedRelay(db_url, producer)  # the defaults a ServiceRuntime uses
    relay_task: asyncio.Task[None] | None = None
    try:
        await consumer.start()
        await producer.start()
        relay_task = asyncio.create_task(relay.run())
        await asyncio.sleep(1.0)  # connected and LISTENing
        cpu_started = time.process_time()
        writes, start = await write_steadily(db, topic, rate, seconds)
        writer_cpu = 100 * (time.process_time() - cpu_started) / (now() - start)
        written_at = now()
        # a consumer that cannot keep up is given up on, its backlog counted (see below)
        outcome = await consumer.finish(len(writes), wait_s=max(60.0, 3 * seconds))
    finally:
        if relay_task is not None:
            relay_task.cancel()
            await asyncio.gather(relay_task, return_exceptions=True)
        await producer.stop()
        await db.dispose()
        await consumer.close()

    applied: dict[str, tuple[float, float]] = outcome["applied"]
    measured = [id_ for id_, (due, _) in writes.items() if due >= start + warmup]
    delivered = [id_ for id_ in measured if id_ in applied]
    # An event never applied is counted with the time it had waited when we stopped: a
    # lower bound, so the percentiles stay honest (lower bounds) instead of flattering.
    latencies = [
        (applied[i][1] if i in applied else outcome["stopped_at"]) - writes[i][1] for i in measured
    ]
    relay_ages = await _relay_ages(db_url)
    sizes = [n for n, _ in relay.batches if n]
    return {
        "settings": _settings(relay, single_process),
        "events_written": len(writes),
        "events_measured": len(measured),
        "events_not_applied": len(measured) - len(delivered),
        "duplicates": outcome["duplicates"],
        "dead_lettered": outcome["dead_lettered"],
        "write_rate": _rate([writes[i][1] for i in measured], since=start + warmup),
        "apply_rate": _rate([applied[i][1] for i in delivered]),
        "consumer_done_after_writer_s": round(outcome["stopped_at"] - written_at, 2),
        "commit_to_applied": summarize_ms(latencies),
        "stages": {
            "writer_due_to_commit": summarize_ms([writes[i][1] - writes[i][0] for i in measured]),
            "insert_to_relay_sent": summarize_ms([relay_ages.get(i, 0.0) for i in measured]),
            "commit_to_handler": summarize_ms([applied[i][0] - writes[i][1] for i in delivered]),
            "handler_to_commit": summarize_ms([applied[i][1] - applied[i][0] for i in delivered]),
        },
        "relay_batches": {
            "calls": len(relay.batches),
            "empty": len(relay.batches) - len(sizes),
            "mean_rows": round(sum(sizes) / len(sizes), 2) if sizes else 0,
            "max_rows": max(sizes, default=0),
            "duration": summarize_ms([d for n, d in relay.batches if n]),
        },
        "timeline": _timeline(writes, start, latencies, measured, relay_ages),
        "cpu_percent": {
            "writer_relay_process": round(writer_cpu, 1),
            "consumer_process": None if single_process else outcome["cpu_percent"],
        },
    }


async def _relay_ages(db_url: str) -> dict[str, float]:
    """Per event, INSERT to the relay's `sent_at` (after Kafka's ack), on the server clock."""
    async with await psycopg.AsyncConnection.connect(libpq_url(db_url)) as conn:
        cur = await conn.execute(
            "SELECT id, EXTRACT(EPOCH FROM sent_at - created_at)::float8 FROM outbox"
            " WHERE sent_at IS NOT NULL"
        )
        return {str(id_): age for id_, age in await cur.fetchall()}


def _timeline(
    writes: dict[str, tuple[float, float]],
    start: float,
    latencies: list[float],
    measured: list[str],
    relay_ages: dict[str, float],
) -> list[dict[str, Any]]:
    """Per second of the run (by due time): p50/p99 end to end and of the relay stage, to
    tell a steady state from a queue that grows or a hiccup (another process, a checkpoint)."""
    seconds: dict[int, tuple[list[float], list[float]]] = {}
    for id_, latency in zip(measured, latencies, strict=True):
        e2e, relay = seconds.setdefault(int(writes[id_][0] - start), ([], []))
        e2e.append(latency)
        relay.append(relay_ages.get(id_, 0.0))
    timeline = []
    for second, (e2e, relay) in sorted(seconds.items()):
        a, b = summarize_ms(e2e), summarize_ms(relay)
        timeline.append(
            {
                "second": second,
                "count": a["count"],
                "p50_ms": a["p50_ms"],
                "p99_ms": a["p99_ms"],
                "relay_p50_ms": b["p50_ms"],
                "relay_p99_ms": b["p99_ms"],
            }
        )
    return timeline


def _rate(stamps: Sequence[float], since: float | None = None) -> float:
    """Events per second from `since` (else the first stamp) to the last stamp."""
    if len(stamps) < 2:
        return 0.0
    if since is None:
        return round((len(stamps) - 1) / (max(stamps) - min(stamps)), 1)
    return round(len(stamps) / (max(stamps) - since), 1)


# -- part 2: relay throughput ---------------------------------------------------------------


async def measure_throughput(
    db_url: str, kafka: KafkaSettings, topic: str, *, rows: int
) -> dict[str, Any]:
    """Median of REPEATS interleaved rounds: relay, bare producer, windowed bare producer."""
    print(f"throughput: {rows:,} rows, {REPEATS} rounds of relay and bare producer ...")
    events = [new_event(**event_fields(i)) for i in range(rows)]
    records = [(e.data, e.key, e.headers()) for e in events]
    relay_runs, pipelined, windowed = [], [], []
    for _ in range(REPEATS):
        relay_runs.append(await _relay_round(db_url, kafka, topic, events))
        pipelined.append(await _produce(kafka, topic, records, window=None))
        window = relay_runs[-1]["batch_size"]  # the relay waits for acks once per batch
        windowed.append(await _produce(kafka, topic, records, window=window))
    relay_run = sorted(relay_runs, key=lambda r: r["seconds"])[REPEATS // 2]
    relay_rate = rows / relay_run["seconds"]
    pipelined_rate = rows / statistics.median(pipelined)
    windowed_rate = rows / statistics.median(windowed)
    baseline_rate = max(pipelined_rate, windowed_rate)  # the faster way to use a bare producer
    return {
        "rows": rows,
        "rounds": REPEATS,
        "prefill_rows_per_s": relay_run["prefill_rows_per_s"],
        "backlog_after": max(r["backlog_after"] for r in relay_runs),
        "relay_events_per_s": round(relay_rate),
        "relay_events_per_s_all": [round(rows / r["seconds"]) for r in relay_runs],
        "relay_batches": relay_run["batches"],
        "relay_batch_duration": relay_run["batch_duration"],
        "baseline_events_per_s": round(baseline_rate),
        "baseline_in_flight_events_per_s": round(pipelined_rate),
        "baseline_in_flight_events_per_s_all": [round(rows / s) for s in pipelined],
        "baseline_windowed_events_per_s": round(windowed_rate),
        "baseline_windowed_events_per_s_all": [round(rows / s) for s in windowed],
        "relay_to_baseline": round(relay_rate / baseline_rate, 3),
    }


async def _relay_round(
    db_url: str, kafka: KafkaSettings, topic: str, events: list[CloudEvent]
) -> dict[str, Any]:
    """Pre-fill the outbox, then time the relay's batch loop until nothing is left."""
    prefill_s = await _prefill(db_url, topic, events)
    producer = kafka_clients.producer(kafka, "bench-relay")
    await producer.start()
    try:
        await producer.partitions_for(topic)  # metadata in place before the clock starts
        relay = TimedRelay(db_url, producer)
        async with await psycopg.AsyncConnection.connect(relay.database_url) as conn:
            started = now()
            while await relay.publish_batch(conn):  # what run() does while batches are full
                pass
            seconds = now() - started
        backlog = await relay.backlog()
    finally:
        await producer.stop()
    return {
        "seconds": seconds,
        "batch_size": relay.batch_size,
        "prefill_rows_per_s": round(len(events) / prefill_s),
        "backlog_after": backlog,
        "batches": sum(1 for n, _ in relay.batches if n),
        "batch_duration": summarize_ms([d for n, d in relay.batches if n]),
    }


async def _prefill(db_url: str, topic: str, events: list[CloudEvent]) -> float:
    """COPY the events into an emptied outbox (as add_event would have written them)."""
    started = now()
    async with await psycopg.AsyncConnection.connect(libpq_url(db_url)) as conn:
        await conn.execute("TRUNCATE outbox")
        async with (
            conn.cursor() as cur,
            cur.copy(
                "COPY outbox (id, topic, key, type, source, subject, tenant, traceparent,"
                " occurred_at, payload) FROM STDIN"
            ) as copy,
        ):
            for e in events:
                await copy.write_row(
                    (
                        e.id,
                        topic,
                        e.subject,
                        e.type,
                        e.source,
                        e.subject,
                        e.tenant,
                        e.traceparent,
                        e.time,
                        e.data,
                    )
                )
        await conn.commit()
        await conn.set_autocommit(True)
        await conn.execute("ANALYZE outbox")  # as autovacuum would after such an insert
    return now() - started


async def _produce(
    kafka: KafkaSettings,
    topic: str,
    records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]],
    *,
    window: int | None,
) -> float:
    """Seconds for a bare idempotent producer to get every record acknowledged; `window`
    waits for the acks every that many records, None keeps them all in flight."""
    producer = kafka_clients.producer(kafka, "bench-baseline")
    await producer.start()
    try:
        await producer.partitions_for(topic)
        step = window or len(records)
        started = now()
        for first in range(0, len(records), step):
            acks = [
                await producer.send(topic, value=value, key=key, headers=headers)
                for value, key, headers in records[first : first + step]
            ]
            await asyncio.gather(*acks)
        return now() - started
    finally:
        await producer.stop()


# -- report -------------------------------------------------------------------------------


def _report(results: dict[str, Any]) -> None:
    s, lat, tp = results["settings"], results["latency"], results["throughput"]
    env = results["environment"]
    print(
        f"\nlayout: {s['layout']}; relay batch {s['relay_batch_size']}, poll"
        f" {s['relay_poll_interval_s']} s; producer acks={s['producer_acks']},"
        f" linger {s['producer_linger_ms']:g} ms; {s['partitions']} partitions"
        f"\nhost: {env['cpus']} CPUs, load average {env['load_average_1m']:.2f} before,"
        f" {env['load_average_1m_end']:.2f} after (other work on the host shows in the tail)"
    )
    names = {
        "commit_to_applied": "commit -> consumer applied",
        "writer_due_to_commit": "  writer: due -> committed",
        "insert_to_relay_sent": "  insert -> relay marked sent",
        "commit_to_handler": "  commit -> consumer handler",
        "handler_to_commit": "  consumer handler -> commit",
    }
    stats = {"commit_to_applied": lat["commit_to_applied"], **lat["stages"]}
    fields = ("count", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")
    print_table(
        "latency in ms (warm-up left out)",
        ["stage", "count", "p50", "p90", "p99", "max", "mean"],
        [[names[k], *(v.get(f) for f in fields)] for k, v in stats.items()],
    )
    if lat["events_not_applied"]:
        print(
            f"NOTE: {lat['events_not_applied']:,} events were not applied when the consumer was"
            " stopped; their wait so far is counted, so the first row holds lower bounds."
        )
    batches, cpu = lat["relay_batches"], lat["cpu_percent"]
    consumer_cpu = cpu["consumer_process"]
    if consumer_cpu is None:
        consumer_cpu = "(same process)"
    print_table(
        "latency run",
        ["figure", "value"],
        [
            ["target rate (events/s)", results["args"]["rate"]],
            ["achieved write rate (events/s)", lat["write_rate"]],
            ["achieved apply rate (events/s)", lat["apply_rate"]],
            [
                "events measured / not applied",
                f"{lat['events_measured']:,} / {lat['events_not_applied']:,}",
            ],
            ["consumer done, s after the writer", lat["consumer_done_after_writer_s"]],
            ["relay batch calls / empty", f"{batches['calls']:,} / {batches['empty']:,}"],
            ["relay batch rows: mean / max", f"{batches['mean_rows']} / {batches['max_rows']}"],
            [
                "relay batch ms: p50 / p99",
                f"{batches['duration'].get('p50_ms')} / {batches['duration'].get('p99_ms')}",
            ],
            [
                "CPU %: writer+relay / consumer",
                f"{cpu['writer_relay_process']} / {consumer_cpu}",
            ],
            [
                f"target: p99 <= {TARGET_P99_MS:g} ms at {TARGET_RATE:g}/s",
                "met" if results["target"]["met"] else "NOT met",
            ],
        ],
    )
    print_table(
        f"relay throughput ({tp['rows']:,} pre-filled rows, median of {tp['rounds']} rounds)",
        ["figure", "value"],
        [
            ["relay (events/s)", tp["relay_events_per_s"]],
            ["  every round", " ".join(f"{r:,}" for r in tp["relay_events_per_s_all"])],
            [
                "  batches / batch p50 ms",
                f"{tp['relay_batches']} / {tp['relay_batch_duration'].get('p50_ms')}",
            ],
            ["bare producer, all in flight (events/s)", tp["baseline_in_flight_events_per_s"]],
            [
                "  every round",
                " ".join(f"{r:,}" for r in tp["baseline_in_flight_events_per_s_all"]),
            ],
            [
                f"bare producer, acks every {s['relay_batch_size']} (events/s)",
                tp["baseline_windowed_events_per_s"],
            ],
            ["  every round", " ".join(f"{r:,}" for r in tp["baseline_windowed_events_per_s_all"])],
            ["relay / bare producer (the faster of the two)", tp["relay_to_baseline"]],
            ["outbox backlog after", tp["backlog_after"]],
            ["(pre-fill by COPY, rows/s)", tp["prefill_rows_per_s"]],
        ],
    )


def headlines(results: dict[str, Any]) -> Summary:
    """The common schema (bench/report.py): the latency headline and the relay's share of a
    bare producer."""
    lat, tp = results["latency"], results["throughput"]
    return Summary(
        headlines=[
            Headline(
                f"commit -> consumer applied p99 at {results['args']['rate']:g}/s",
                lat["commit_to_applied"].get("p99_ms"),
                "ms",
                better="lower",
                target=TARGET_P99_MS,
            ),
            Headline(
                "relay throughput",
                tp["relay_events_per_s"],
                "events/s",
                baseline=tp["baseline_events_per_s"],
                baseline_name="bare producer",
            ),
        ],
        latencies={"commit -> consumer applied": lat["commit_to_applied"]},
    )
