"""Background work of a service, supervised in one way: periodic jobs and long-running loops.

A `Job` is a name, an interval and a coroutine function taking the `ServiceRuntime`:

    Job("grant-expiry", settings.grant_expiry_interval_s, lambda rt: expire_grants(rt.database))

The runtime runs each job in its own task: every `interval_s` seconds (the first run one
interval after start, or at once with `immediate=True`) it awaits `run(runtime)`. A run
that raises is logged with the job's name and retried (tenacity) after `interval_s`, doubling
up to `max_backoff_s` while it keeps failing; then the schedule resumes. An interval of 0
(or less) disables the job: it is never started. Stopping cancels the task and waits for
it, so nothing outlives the runtime's database and producer.

A long-running loop (the outbox relay, a consumer, a LISTEN connection) is a job whose
`run` does not return while it works: when it fails the same retry applies, and when it
returns (a session that ended after working, e.g. a dropped connection) it starts again
after `interval_s` with a fresh backoff. The kit's own loops (relay, consumers, feeds,
heartbeat) are jobs too, so there is one supervisor for everything a service runs.
"""

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_never,
    wait_exponential,
)

log = logging.getLogger(__name__)

JobRun = Callable[[Any], Awaitable[Any]]  # run(runtime); the runtime is a ServiceRuntime


@dataclasses.dataclass(frozen=True)
class Job:
    name: str
    interval_s: float
    run: JobRun
    immediate: bool = False
    max_backoff_s: float | None = None  # None: retry a failed run every interval_s

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0


def retrying(
    *,
    first_wait_s: float,
    max_wait_s: float,
    what: str,
    attempts: int | None = None,
    retry_if: Callable[[BaseException], bool] = lambda _: True,
) -> AsyncRetrying:
    """The platform's one retry policy: exponential backoff from `first_wait_s` up to
    `max_wait_s`, every failure logged as `what`; forever unless `attempts` is given. An
    error `retry_if` refuses, or the last one, is raised."""

    def log_failure(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            f"{what} failed; retrying",
            extra={"fields": {"attempt": state.attempt_number, "error": repr(error)}},
        )

    return AsyncRetrying(
        wait=wait_exponential(multiplier=first_wait_s, min=first_wait_s, max=max_wait_s),
        retry=retry_if_exception(lambda exc: isinstance(exc, Exception) and retry_if(exc)),
        stop=stop_after_attempt(attempts) if attempts else stop_never,
        before_sleep=log_failure,
        reraise=True,
    )


async def supervise(job: Job, runtime: Any) -> None:
    """Run `job` on its schedule until cancelled (the runtime's task for it)."""
    first = True
    while True:
        if not (first and job.immediate):
            await asyncio.sleep(job.interval_s)
        first = False
        policy = retrying(
            first_wait_s=job.interval_s,
            max_wait_s=max(job.interval_s, job.max_backoff_s or job.interval_s),
            what=f"job {job.name}",
        )
        async for attempt in policy:
            with attempt:
                await job.run(runtime)
