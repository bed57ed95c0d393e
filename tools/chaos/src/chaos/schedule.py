"""The seeded fault schedule: a pure function of (seed, cycles) -> the list of faults.

`random.Random(seed)` picks, per cycle, a fault kind by weight, its target and the pause
that follows it, so the same seed always replays the same schedule (printed before the run).
"""

from __future__ import annotations

import dataclasses
import random

# kill -9 of one process, then a restart (as its supervisor would).
KILL = "kill"
# the process restarted with GPUCLOUD_FAULTS=<point> (platformkit/faults.py): it dies at the
# first time it reaches that instruction, then is restarted clean.
CRASH_POINT = "crash_point"
# graceful stop of the single Kafka broker, then a start.
KAFKA_RESTART = "kafka_restart"
# PostgreSQL: fast shutdown (roll back, disconnect) then a start.
POSTGRES_FAST = "postgres_fast"
# PostgreSQL: kill -9 of the postmaster (crash recovery on the next start).
POSTGRES_KILL = "postgres_kill"

KINDS = (KILL, CRASH_POINT, KAFKA_RESTART, POSTGRES_FAST, POSTGRES_KILL)
# Relative weights: process kills dominate; infrastructure restarts are the slow ones.
WEIGHTS = (60, 16, 8, 8, 8)

KILL_TARGETS = (
    "gpuaas",
    "billing",
    "iam",
    "audit",
    "gateway",
    "node-agent-1",
    "node-agent-2",
    "terminal-gateway",
)
# (process, crash point) pairs that sit on the never-lose/never-twice paths and that the
# load reaches within seconds (billing's tenant consumer, say, sees an event only per sign-up).
CRASH_POINTS = (
    ("gpuaas", "relay.after_publish"),
    ("gpuaas", "consumer.after_commit"),
    ("billing", "relay.after_publish"),
    ("billing", "batch_consumer.before_commit"),
    ("billing", "batch_consumer.after_commit"),
    ("iam", "relay.after_publish"),
    ("audit", "consumer.after_commit"),
)


@dataclasses.dataclass(frozen=True)
class Fault:
    cycle: int
    kind: str
    target: str
    # the crash point for CRASH_POINT faults, else None
    point: str | None
    # seconds of load after the fault (and its recovery) before the next one
    pause_s: float

    def describe(self) -> str:
        what = f"{self.target} at {self.point}" if self.point else self.target
        return f"#{self.cycle:03d} {self.kind:<14} {what:<40} then {self.pause_s:.1f} s"


def schedule(seed: int, cycles: int) -> list[Fault]:
    """The faults of a run: the same (seed, cycles) always gives the same list, and a longer
    run starts with the shorter run's faults."""
    if cycles < 0:
        raise ValueError("cycles must be >= 0")
    rng = random.Random(seed)
    faults = []
    for cycle in range(1, cycles + 1):
        kind = rng.choices(KINDS, weights=WEIGHTS)[0]
        point = None
        if kind == KILL:
            target = rng.choice(KILL_TARGETS)
        elif kind == CRASH_POINT:
            target, point = rng.choice(CRASH_POINTS)
        elif kind == KAFKA_RESTART:
            target = "kafka"
        else:
            target = "postgres"
        pause_s = round(rng.uniform(0.5, 3.0), 1)
        faults.append(Fault(cycle, kind, target, point, pause_s))
    return faults


def counts(faults: list[Fault]) -> dict[str, int]:
    """Faults by kind, every kind listed (zeros included)."""
    out = dict.fromkeys(KINDS, 0)
    for fault in faults:
        out[fault.kind] += 1
    return out
