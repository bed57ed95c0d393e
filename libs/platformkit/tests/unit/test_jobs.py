"""The runtime's job supervisor: a job runs on its interval, a failing run is logged and
retried, an interval of 0 never starts, stop() cancels everything."""

import asyncio
import logging

import pytest

from platformkit.definition import ServiceDefinition
from platformkit.jobs import Job
from platformkit.runtime import ServiceRuntime
from platformkit.settings import ServiceSettings


def _runtime(*jobs: Job) -> ServiceRuntime:
    definition = ServiceDefinition("jobs", "0", "job test", [], jobs=jobs, kafka=False)
    return ServiceRuntime(definition, ServiceSettings(service_name="jobs"))


async def _until(check, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.01)


async def test_jobs_run_on_their_interval_and_failures_are_logged_and_retried(caplog):
    ticks: list[str] = []
    calls = {"flaky": 0}

    async def tick(runtime):
        assert isinstance(runtime, ServiceRuntime)
        ticks.append("tick")

    async def flaky(_runtime):
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise RuntimeError("not yet")
        ticks.append("flaky")

    async def never(_runtime):
        raise AssertionError("an interval of 0 disables the job")

    runtime = _runtime(
        Job("tick", 0.02, tick),
        Job("flaky", 0.02, flaky, immediate=True),
        Job("off", 0, never),
    )
    with caplog.at_level(logging.WARNING, logger="platformkit.jobs"):
        await runtime.start()
        try:
            assert sorted(runtime.running_jobs()) == ["flaky", "tick"]
            await _until(lambda: ticks.count("tick") >= 3 and "flaky" in ticks)
        finally:
            await runtime.stop()
    assert calls["flaky"] >= 3
    failures = [r for r in caplog.records if "job flaky failed" in r.getMessage()]
    assert len(failures) >= 2
    assert runtime.running_jobs() == []


async def test_stop_cancels_a_long_running_job():
    cancelled = asyncio.Event()

    async def forever(_runtime):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    runtime = _runtime(Job("forever", 1.0, forever, immediate=True))
    await runtime.start()
    await asyncio.sleep(0.05)
    await runtime.stop()
    assert cancelled.is_set()


@pytest.mark.parametrize("interval", [0, -1])
async def test_a_disabled_job_is_not_started(interval):
    runtime = _runtime(Job("off", interval, lambda rt: asyncio.sleep(0)))
    await runtime.start()
    assert runtime.running_jobs() == []
    await runtime.stop()
