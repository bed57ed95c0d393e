"""GET /metrics on a real service app (real Kafka and PostgreSQL): request latency by route
template, outbox backlog, consumer events and lag, DLQ depth; only for a bearer token."""

import asyncio
import re
import uuid

import pytest
from litestar import get
from litestar.testing import AsyncTestClient

from platformkit.consumers import Subscription
from platformkit.definition import ServiceDefinition
from platformkit.envelope import new_event
from platformkit.http import build_service_app
from platformkit.settings import ServiceSettings

pytestmark = pytest.mark.integration

OPERATOR = "op-" + uuid.uuid4().hex
SCRAPER = "scrape-" + uuid.uuid4().hex


def _value(text: str, name: str, **labels: str) -> float | None:
    """The sample `name{labels...}` of a Prometheus text exposition, None when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


@get("/v1/things/{thing_id:uuid}", sync_to_thread=False)
def thing(thing_id: uuid.UUID) -> dict[str, str]:
    return {"id": str(thing_id)}


async def test_metrics_report_requests_outbox_consumers_and_dlq(
    infra, kit_database, topic, producer
):
    async def handle(event, uow):
        if event.decode(dict).get("fail"):
            raise RuntimeError("refused on purpose")
        await uow.execute("INSERT INTO effects (event_id) VALUES (:id)", {"id": event.id})

    definition = ServiceDefinition(
        name="metered",
        version="0.0.1",
        description="metrics test service",
        route_handlers=[thing],
        subscriptions=[Subscription("things", [topic], handle)],
        relay=False,  # keeps outbox rows unsent, so the backlog is observable
    )
    settings = ServiceSettings(
        service_name="metered",
        kafka=infra.kafka,
        database_url=kit_database,
        heartbeat_interval_s=0,
        consumer_max_attempts=1,
        operator_token=OPERATOR,
        metrics_token=SCRAPER,
        log_format="text",
    )
    app = build_service_app(definition, settings)

    import psycopg

    with psycopg.connect(kit_database, autocommit=True) as conn:
        for _ in range(3):
            conn.execute(
                "INSERT INTO outbox (id, topic, key, type, source, subject, occurred_at, payload)"
                " VALUES (gen_random_uuid(), 't', 'k', 'x', 's', 'k', now(), '{}')"
            )

    async with AsyncTestClient(app) as client:
        for payload in ({"n": 1}, {"n": 2}, {"fail": True}):
            event = new_event(
                type="test.thing.happened", source="tests", subject="a", payload=payload
            )
            await producer.send_and_wait(
                topic, value=event.data, key=event.key, headers=event.headers()
            )
        for _ in range(2):
            assert (await client.get(f"/v1/things/{uuid.uuid4()}")).status_code == 200

        assert (await client.get("/metrics")).status_code == 401
        assert (
            await client.get("/metrics", headers={"Authorization": "Bearer wrong"})
        ).status_code == 401

        group = "metered.things"
        text = ""
        for _ in range(100):  # the consumer joins its group, applies, dead-letters, commits
            resp = await client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPER}"})
            assert resp.status_code == 200
            text = resp.text
            if (
                _value(text, "consumer_events_total", group=group, outcome="applied") == 2
                and _value(text, "dlq_depth", topic=topic) == 1
                and sum(
                    _value(text, "consumer_lag", group=group, partition=str(p)) or 0
                    for p in range(4)
                )
                == 0
                and _value(text, "consumer_lag", group=group) is not None
            ):
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail(f"metrics never settled:\n{text}")

        assert _value(text, "consumer_events_total", group=group, outcome="dead_lettered") == 1
        assert _value(text, "outbox_backlog") == 3
        assert (_value(text, "outbox_oldest_unsent_seconds") or 0) > 0
        assert (
            _value(
                text,
                "http_request_duration_seconds_count",
                route="/v1/things/{thing_id}",
                method="GET",
                status="200",
            )
            == 2
        )
        # the operator token scrapes too
        resp = await client.get("/metrics", headers={"Authorization": f"Bearer {OPERATOR}"})
        assert resp.status_code == 200
