"""Prometheus metrics every service exposes at `GET /metrics` (architecture.md §8).

- `http_request_duration_seconds{method, route, status}`: a histogram per route template
  (never the raw path, so ids do not explode the series count);
- `outbox_backlog` and `outbox_oldest_unsent_seconds`: rows the relay has not published;
- `outbox_published_total`: rows this process's relay published;
- `consumer_lag{group, topic, partition}`: records of an assigned partition not yet
  committed (end offset minus committed offset);
- `consumer_events_total{group, outcome}`: applied, duplicate or dead-lettered events;
- `dlq_depth{topic}`: records in the dead-letter twin of every topic this process consumes.

The gauges that need a query (backlog, lag, DLQ depth) are read when Prometheus scrapes,
not on a timer, so an idle service does no work for them. Each app gets its own registry:
several apps in one test process never collide.

The route answers only to a bearer token: the operator token or `GPUCLOUD_METRICS_TOKEN`
(what a Prometheus scrape config carries), compared in constant time. Labels carry route
templates, topics and groups, never a tenant, a user or a secret.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from platformkit.errors import Unauthorized

if TYPE_CHECKING:
    from platformkit.runtime import ServiceRuntime

LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A scrape never waits long on Kafka or PostgreSQL: a slow probe reports what it has.
PROBE_TIMEOUT_S = 2.0


class ServiceMetrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self._snapshot: list[Metric] = []
        self.registry.register(_Snapshot(self))

    async def render(self, runtime: ServiceRuntime | None) -> bytes:
        self._snapshot = await self._gather(runtime) if runtime is not None else []
        return generate_latest(self.registry)

    async def _gather(self, runtime: ServiceRuntime) -> list[Metric]:
        metrics: list[Metric] = []
        if runtime.relay is not None:
            published = CounterMetricFamily(
                "outbox_published", "Outbox rows this process's relay published"
            )
            published.add_metric([], runtime.relay.published)
            metrics.append(published)
        if runtime.db is not None:
            metrics += await _bounded(_outbox_gauges(runtime), [])
        lag = GaugeMetricFamily(
            "consumer_lag",
            "Records of an assigned partition not yet committed",
            labels=["group", "topic", "partition"],
        )
        readers = [consumer.lag_by_partition for consumer in runtime.consumers]
        for result in await asyncio.gather(*(_bounded(read(), {}) for read in readers)):
            for (group, topic, partition), behind in sorted(result.items()):
                lag.add_metric([group, topic, str(partition)], behind)
        metrics.append(lag)
        events = CounterMetricFamily(
            "consumer_events", "Events handled by this process", labels=["group", "outcome"]
        )
        for consumer in runtime.consumers:
            events.add_metric([consumer.group_id, "applied"], consumer.processed)
            events.add_metric([consumer.group_id, "duplicate"], consumer.duplicates)
            events.add_metric([consumer.group_id, "dead_lettered"], consumer.dead_lettered)
        metrics.append(events)
        topics = sorted({t for c in runtime.consumers for t in c.subscription.topics})
        if topics:
            depth = GaugeMetricFamily(
                "dlq_depth", "Records in the dead-letter twin of a consumed topic", labels=["topic"]
            )
            for topic, records in sorted((await _bounded(runtime.dlq_depths(topics), {})).items()):
                depth.add_metric([topic], records)
            metrics.append(depth)
        return metrics


class _Snapshot:
    """Hands prometheus_client what the last scrape gathered (its collectors are sync)."""

    def __init__(self, owner: ServiceMetrics) -> None:
        self.owner = owner

    def collect(self) -> Iterable[Metric]:
        return list(self.owner._snapshot)


T = TypeVar("T")


async def _bounded(probe: Awaitable[T], fallback: T) -> T:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            return await probe
    except Exception:
        return fallback


async def _outbox_gauges(runtime: ServiceRuntime) -> list[Metric]:
    assert runtime.db is not None
    async with runtime.db.unit_of_work() as uow:
        row = await uow.fetch_one(
            "SELECT count(*) AS backlog,"
            " coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0) AS oldest"
            " FROM outbox WHERE sent_at IS NULL"
        )
    backlog = GaugeMetricFamily("outbox_backlog", "Outbox rows not yet published")
    oldest = GaugeMetricFamily(
        "outbox_oldest_unsent_seconds", "Age of the oldest outbox row not yet published"
    )
    backlog.add_metric([], int(row["backlog"]) if row else 0)
    oldest.add_metric([], float(row["oldest"]) if row else 0.0)
    return [backlog, oldest]


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    """Times every routed request by its route template."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            metrics: ServiceMetrics | None = getattr(scope["app"].state, "metrics", None)
            if metrics is not None:
                route = scope.get("path_template") or "unmatched"  # type: ignore[typeddict-item]
                metrics.requests.labels(scope["method"], route, str(status)).observe(
                    time.perf_counter() - started
                )

    return middleware


def _authorized(request: Request[Any, Any, Any], state: State) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    settings = state.settings
    accepted = [t for t in (settings.operator_token, settings.metrics_token) if t]
    return any(hmac.compare_digest(presented.encode(), t.encode()) for t in accepted)


@get("/metrics", operation_id="metrics", tags=["ops"], include_in_schema=False)
async def metrics_route(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    if not _authorized(request, state):
        raise Unauthorized("a metrics scrape needs the operator or metrics bearer token")
    metrics: ServiceMetrics = state.metrics
    body = await metrics.render(getattr(state, "runtime", None))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
