"""The rating consumer on real Kafka and PostgreSQL, in a real process killed at each step:
before the database commit, and after it but before the offset commit. Either way the
ledger ends identical to a crash-free run over the same stream (duplicates and a late
interval included)."""

import datetime as dt
import uuid

import pytest

from billing.app.verify import verify_ledger
from platformkit.db import Database

from .conftest import (
    T0,
    ledger_snapshot,
    run_worker,
    send_all,
    set_price,
    usage_event,
    worker_stats,
)

pytestmark = pytest.mark.integration


def _stream():
    """3 tenants x 3 allocations x 4 intervals, 5 re-emitted intervals, 1 late interval."""
    events, tenants = [], [uuid.uuid4() for _ in range(3)]
    for tenant in tenants:
        for _ in range(3):
            allocation = uuid.uuid4()
            for seq in range(4):
                start = T0 + dt.timedelta(days=2, minutes=seq)
                events.append(
                    usage_event(tenant, allocation=allocation, sequence=seq, started_at=start)
                )
    late_allocation = uuid.uuid4()
    duplicates = [
        usage_event(
            uuid.UUID(e.tenant),
            allocation=uuid.UUID(e.subject),
            sequence=0,
            started_at=T0 + dt.timedelta(days=2),
        )
        for e in events[::7]
    ]
    late = usage_event(
        tenants[0], allocation=late_allocation, started_at=T0 + dt.timedelta(hours=1)
    )
    distinct = len(events) + 1
    return events + duplicates + [late], distinct


async def _prices(url):
    db = Database(url, pool_size=1)
    try:
        await set_price(db, "gpu:h100", 3_600_000)
        await set_price(db, "gpu:h100", 7_200_000, at=T0 + dt.timedelta(days=1))
    finally:
        await db.dispose()


class TestCrashRecovery:
    @pytest.mark.parametrize(
        "fault", ["batch_consumer.before_commit", "batch_consumer.after_commit"]
    )
    async def test_ledger_after_a_crash_equals_a_crash_free_run(
        self, infra, billing_url, second_billing_url, topic, producer, fault
    ):
        events, distinct = _stream()
        await send_all(producer, topic, events)
        await _prices(billing_url)
        await _prices(second_billing_url)
        kafka = infra.kafka

        reference = worker_stats(
            run_worker(second_billing_url, kafka, topic, "reference", distinct)
        )
        assert reference["rated"] == distinct
        assert reference["duplicates"] == len(events) - distinct

        crashed = run_worker(billing_url, kafka, topic, "crashy", distinct, faults=fault)
        assert crashed.returncode == 137, crashed.stderr[-2000:]
        committed = ledger_snapshot(billing_url)["transfers"]
        if fault.endswith("before_commit"):
            assert committed == []
        else:
            assert committed  # the first batch committed before its offsets

        recovered = worker_stats(run_worker(billing_url, kafka, topic, "crashy", distinct))
        if fault.endswith("after_commit"):
            assert recovered["duplicates"] > reference["duplicates"]  # the batch came again

        assert ledger_snapshot(billing_url) == ledger_snapshot(second_billing_url)
        db = Database(billing_url, pool_size=1)
        try:
            report = await verify_ledger(db)
        finally:
            await db.dispose()
        assert report.ok and report.transfers == distinct
