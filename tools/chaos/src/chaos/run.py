"""One chaos run: isolated stack up, tenants on the launch journey, the seeded faults one
after another, recovery, the audit, the summary; the stack torn down whatever happens."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
import time
from pathlib import Path

import httpx

from chaos import audit as audit_mod
from chaos import load, stack
from chaos.schedule import CRASH_POINT, KILL, Fault, counts, schedule


@dataclasses.dataclass
class Options:
    seed: int
    cycles: int
    tenants: int = 6
    port_offset: int = stack.DEFAULT_PORT_OFFSET
    home: Path | None = None
    keep: bool = False
    recovery_s: float = 120.0
    wait_ready: bool = False


@dataclasses.dataclass
class Outcome:
    faults: list[Fault]
    report: audit_mod.Report
    stats: load.LoadStats
    duration_s: float

    @property
    def violations(self) -> int:
        return len(self.report.violations)


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


def execute(options: Options) -> Outcome:
    started = time.monotonic()
    faults = schedule(options.seed, options.cycles)
    log(f"seed {options.seed}, {options.cycles} cycles; the schedule:")
    for fault in faults:
        print(f"  {fault.describe()}", flush=True)
    home = stack.isolate(options.home, options.port_offset)
    log(f"isolated stack: home {home}, port offset {options.port_offset}")
    report: audit_mod.Report | None = None
    try:
        infra = stack.up(home, log)
        report, stats = asyncio.run(_drive(options, faults, infra))
    finally:
        # A failed run keeps its home: the logs explain it.
        keep = options.keep or report is None or bool(report.violations)
        log(f"tearing the chaos stack down{f'; logs kept under {home}/logs' if keep else ''}")
        stack.down(home, keep, log)
    return Outcome(faults, report, stats, time.monotonic() - started)


async def _drive(options: Options, faults: list[Fault], infra) -> tuple:
    from devstack import credentials, fleet, processes

    f = fleet.load()
    gateway = processes.url(f.gateway)
    operator = credentials.password(credentials.OPERATOR_TOKEN)
    stats = load.LoadStats()
    rng = random.Random(options.seed)
    tenants = [
        load.Tenant(i, gateway, operator, random.Random(rng.random()), stats)
        for i in range(options.tenants)
    ]
    stop = asyncio.Event()
    workers = [asyncio.create_task(load.run_tenant(t, stop)) for t in tenants]
    windows: list[list[float]] = []  # each fault: [injected, what it hit ready again (or inf)]
    watchers: list[asyncio.Task] = []
    try:
        # Let the tenants sign up and start their first rounds before the first fault.
        await asyncio.sleep(5)
        for fault in faults:
            revived = await asyncio.to_thread(stack.revive, infra)
            if revived:
                log(f"    supervisor: started {', '.join(revived)} again (exited on its own)")
            log(f"{fault.describe()}")
            injected = time.monotonic()
            outcome = await asyncio.to_thread(stack.inject, fault, infra, options.wait_ready)
            log(f"    {outcome}")
            window = [injected, float("inf")]
            windows.append(window)
            watchers.append(asyncio.create_task(_window(fault, window)))
            await asyncio.sleep(fault.pause_s)
        log("faults done; waiting until every process is ready")
        await asyncio.to_thread(stack.ensure_all_ready, infra)
        log("stopping the load and releasing what still runs")
        stop.set()
        stopped = time.monotonic()
        for tenant in tenants:
            tenant.close_refusal(stopped)
        await asyncio.wait(workers, timeout=5)
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*(_quietly(t.release_all()) for t in tenants))
    finally:
        for task in (*workers, *watchers):
            task.cancel()
        await asyncio.gather(*workers, *watchers, return_exceptions=True)
        for tenant in tenants:
            await tenant.close()
    connect = audit_mod.connector(infra.pg_admin_url)
    databases = f.database_packages
    await _recover(connect, databases, options.recovery_s)
    verify = await _verify(gateway, operator)
    report = await asyncio.to_thread(audit_mod.audit, connect, databases, verify)
    # a fault whose process never became ready again leaves its window open (inf)
    audit_mod.check_refusals(report, stats.refusals, [(s, e) for s, e in windows])
    report.figures["tenants"] = options.tenants
    return report, stats


async def _window(fault: Fault, window: list[float]) -> None:
    """The fault's window ends when what it stopped answers /readyz again: its process, or,
    after a Kafka or PostgreSQL restart, every process of the fleet."""
    from devstack import fleet

    if fault.kind in (KILL, CRASH_POINT):
        names = [fault.target]
    else:
        names = [p.name for p in fleet.load().processes]
    ready = await asyncio.gather(*(stack.wait_ready(n, 120.0) for n in names))
    if all(ready):
        window[1] = time.monotonic()


async def _quietly(awaitable) -> None:
    try:
        await awaitable
    except load.Gave:
        pass


async def _recover(connect, databases: tuple[str, ...], within: float) -> None:
    """Bounded wait until the platform is at rest: every outbox row sent, no allocation
    outside a final state, every usage interval rated. What is left then is a violation."""
    deadline = time.monotonic() + within
    while True:
        unsent = await asyncio.to_thread(audit_mod.unsent_outbox, connect, databases)
        live = await asyncio.to_thread(audit_mod.live_allocations, connect)
        unrated = await asyncio.to_thread(audit_mod.unrated_intervals, connect)
        outliving = await asyncio.to_thread(audit_mod.outliving_sessions, connect, databases)
        pending = sum(unsent.values())
        if not (pending or live or unrated or outliving):
            log(
                "at rest: every outbox row sent, every allocation final, all usage rated,"
                " no terminal session on a finished allocation"
            )
            await asyncio.sleep(3)  # consumers behind a sent row (inbox) catch up
            return
        if time.monotonic() > deadline:
            log(
                f"not at rest after {within:.0f} s: unsent {unsent}, live {live}, unrated"
                f" {unrated}, outliving sessions {len(outliving)}"
            )
            for database, n in unsent.items():
                if n:
                    _relay_trail(database.replace("_", "-"))
            return
        await asyncio.sleep(1.0)


def _relay_trail(service: str, lines: int = 8) -> None:
    """The last things a stuck service's log says about its relay and producer (the log
    itself stays under the kept home; CI shows only this output)."""
    from devstack.supervise import log_file

    try:
        text = log_file(service).read_text(errors="replace").splitlines()
    except OSError:
        return
    trail = [line for line in text if re.search(r"outbox-relay|producer|sender", line)]
    log(f"{service}: last relay/producer log lines ({len(trail)} in all):")
    for line in trail[-lines:]:
        print(f"    {line[:400]}", flush=True)


async def _verify(gateway: str, operator: str) -> dict | None:
    async with httpx.AsyncClient(base_url=gateway, timeout=30.0) as client:
        for _ in range(10):
            try:
                r = await client.get(
                    "/v1/billing/ledger/verify", headers={"Authorization": f"Bearer {operator}"}
                )
                if r.status_code == 200:
                    return r.json()
            except httpx.HTTPError:
                pass
            await asyncio.sleep(1.0)
    return None


def summary(options: Options, outcome: Outcome) -> str:
    lines = [
        "",
        "==== chaos summary ====",
        f"seed:        {options.seed}",
        f"cycles:      {options.cycles}",
        f"duration:    {outcome.duration_s:.0f} s",
        "faults:      " + ", ".join(f"{kind} {n}" for kind, n in counts(outcome.faults).items()),
        f"tenants:     {options.tenants}",
    ]
    s = outcome.stats
    lines.append(
        f"load:        signups {s.signups}, payments {s.payments} "
        f"({s.payments_unsettled} unsettled), launches {s.launches} ({s.rejected} rejected, "
        f"{s.refused} refused 402), "
        f"releases {s.releases}, terminals {s.terminals} ({s.terminals_exited} exited), "
        f"billing stops {s.billing_stops}, retries {s.retries}, "
        f"gave up {s.gave_up}, step-ups {s.step_ups}, 401 runs {len(s.refusals)}"
    )
    figures = outcome.report.figures
    lines.append("events:      " + ", ".join(f"{k} {v}" for k, v in sorted(figures.items())))
    if s.errors:
        # grouped by their start (what failed, not which tenant or id)
        kinds: dict[str, int] = {}
        for error in s.errors:
            head = re.sub(r"^tenant \d+( setup \d)?: ", "", error)[:90]
            kinds[head] = kinds.get(head, 0) + 1
        lines.append(f"load errors: {len(s.errors)} (the load's, not violations)")
        lines += [f"  {n} x {head}" for head, n in sorted(kinds.items(), key=lambda i: -i[1])]
    lines.append(f"violations:  {outcome.violations}")
    for violation in outcome.report.violations[:50]:
        lines.append(f"  - [{violation.check}] {violation.detail}")
    return "\n".join(lines)
