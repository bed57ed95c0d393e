"""The auditor: after the last fault and the recovery, read every service's own tables over
SQL (as the stack's admin role) and check the platform's promises. Each broken promise is one
Violation; a run passes with none.

1. every usage interval gpuaas put in its outbox is rated exactly once in billing's ledger
   (its leg-0 transfer id is the interval id; a zero-length interval is free), no ledger
   usage without an interval, and no two intervals of an allocation overlap in time;
2. every ledger transaction balanced, and the cached account balances equal the ones derived
   from the transfers (plus billing's own GET /v1/billing/ledger/verify);
3. no allocation left outside a final state after the recovery;
4. no GPU slice double-booked, and no booking left behind by a finished allocation;
5. every outbox row sent, every event on a consumed topic in its consumers' inbox, and
   gpuaas's balance-standing projection equal to billing's last announcement per tenant;
6. no terminal session outlives its allocation (every session of a finished allocation is
   finished too), and every session that closed cleanly (`exited` or `closed` by its user)
   has its whole recording: a digest on the session and on its `closed` event, equal to the
   SHA-256 of the stored asciicast chunks;
7. audit's log has no gap and no duplicate leaf: leaf indexes contiguous from the first one
   kept (0 unless retention pruned a prefix), each source event id exactly once, and the
   latest signed checkpoint's root equal to the root recomputed from the stored leaves.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
import json
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import psycopg

from gpucloud_contracts.catalog import Topic
from gpucloud_trust import merkle

FINAL_ALLOCATION_STATES = ("released", "rejected")
# (publisher database, topic) -> (consumer database, consumer name): an inbox consumer, or
# audit's "log", whose proof of receipt is the event's leaf (event ids are unique there).
AUDIT_LOG = "log"
INBOX_CONSUMERS = (
    ("iam", Topic.IAM_TENANT_V1, "billing", "tenants"),
    ("iam", Topic.IAM_TENANT_V1, "audit", AUDIT_LOG),
    ("iam", Topic.IAM_MEMBERSHIP_V1, "audit", AUDIT_LOG),
    ("iam", Topic.IAM_SERVICE_ACCOUNT_V1, "audit", AUDIT_LOG),
    ("terminal_gateway", Topic.TERMINAL_SESSION_V1, "audit", AUDIT_LOG),
    ("billing", Topic.BILLING_BALANCE_V1, "gpuaas", "balance-standing"),
    ("gpuaas", Topic.GPUAAS_ALLOCATION_V1, "terminal_gateway", "allocations"),
    ("iam", Topic.IAM_TENANT_V1, "terminal_gateway", "tenants"),
)
TERMINAL_DB = "terminal_gateway"
LIVE_SESSION_STATES = ("minted", "open", "detached")
CLEAN_ENDINGS = ("exited", "closed")
USAGE_TOPIC = Topic.METERING_USAGE_V1


@dataclasses.dataclass(frozen=True)
class Violation:
    check: str
    detail: str


@dataclasses.dataclass
class Report:
    violations: list[Violation] = dataclasses.field(default_factory=list)
    figures: dict[str, int] = dataclasses.field(default_factory=dict)

    def add(self, check: str, detail: str) -> None:
        self.violations.append(Violation(check, detail))


Connect = Callable[[str], psycopg.Connection]


def connector(pg_admin_url: str) -> Connect:
    base = pg_admin_url.rsplit("/", 1)[0]
    return lambda database: psycopg.connect(f"{base}/{database}", autocommit=True)


def _rows(connect: Connect, database: str, sql: str, *params: Any) -> list[tuple]:
    with connect(database) as conn:
        return conn.execute(sql, params).fetchall()


def _payload(raw: bytes | memoryview) -> dict[str, Any]:
    return json.loads(bytes(raw))


# --- quiescence --------------------------------------------------------------------------


def unsent_outbox(connect: Connect, databases: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for database in databases:
        (count,) = _rows(connect, database, "SELECT count(*) FROM outbox WHERE sent_at IS NULL")[0]
        out[database] = count
    return out


def live_allocations(connect: Connect) -> int:
    return _rows(
        connect,
        "gpuaas",
        "SELECT count(*) FROM allocations WHERE state <> ALL(%s)",
        list(FINAL_ALLOCATION_STATES),
    )[0][0]


def unrated_intervals(connect: Connect) -> int:
    return len(_usage_findings(connect)[0])


# --- the checks ----------------------------------------------------------------------------


def _usage_findings(connect: Connect) -> tuple[list[str], dict[str, Any]]:
    """Interval ids not rated (missing), plus figures; overlaps and phantoms come in check."""
    intervals = {}
    for (raw,) in _rows(
        connect, "gpuaas", "SELECT payload FROM outbox WHERE topic = %s ORDER BY seq", USAGE_TOPIC
    ):
        body = _payload(raw)
        intervals[body["interval_id"]] = body
    rated = {
        str(i)
        for (i,) in _rows(connect, "billing", "SELECT id FROM transfers WHERE kind = 'usage'")
    }
    missing = [
        iid for iid, body in intervals.items() if body["duration_ms"] > 0 and iid not in rated
    ]
    return missing, {"intervals": intervals, "rated": rated}


def check_usage(connect: Connect, report: Report) -> None:
    missing, found = _usage_findings(connect)
    intervals: dict[str, dict] = found["intervals"]
    unrated = {
        str(i): reason
        for i, reason in _rows(connect, "billing", "SELECT interval_id, reason FROM unrated_usage")
    }
    for iid in missing:
        why = f" (unrated: {unrated[iid]})" if iid in unrated else ""
        report.add("usage rated once", f"interval {iid} is not in the ledger{why}")
    leg0 = _rows(
        connect,
        "billing",
        "SELECT id, count(*) OVER (PARTITION BY id) FROM transfers"
        " WHERE kind = 'usage' AND leg = 0",
    )
    for transfer_id, copies in leg0:
        if str(transfer_id) not in intervals:
            report.add("usage rated once", f"ledger usage {transfer_id} rates no known interval")
        if copies > 1:
            report.add("usage rated once", f"interval {transfer_id} rated {copies} times")
    by_allocation: dict[str, list[dict]] = defaultdict(list)
    for body in intervals.values():
        by_allocation[body["allocation_id"]].append(body)
    for allocation_id, items in by_allocation.items():
        items.sort(key=lambda b: b["sequence"])
        sequences = [b["sequence"] for b in items]
        if len(set(sequences)) != len(sequences):
            report.add("usage rated once", f"allocation {allocation_id}: a sequence twice")
        for before, after in itertools.pairwise(items):
            if dt.datetime.fromisoformat(after["started_at"]) < dt.datetime.fromisoformat(
                before["ended_at"]
            ):
                report.add(
                    "usage rated once",
                    f"allocation {allocation_id}: intervals {before['sequence']} and "
                    f"{after['sequence']} overlap (charged twice for the same time)",
                )
        finals = [b for b in items if b["final"]]
        if len(finals) > 1:
            report.add("usage rated once", f"allocation {allocation_id}: {len(finals)} finals")
    report.figures["usage intervals"] = len(intervals)
    report.figures["usage intervals rated"] = len(intervals) - len(missing)


def check_ledger(connect: Connect, report: Report, verify: dict[str, Any] | None) -> None:
    unbalanced = _rows(
        connect,
        "billing",
        """
        WITH legs AS (
            SELECT transaction_id, debit_account_id AS account, -amount_micros AS amount,
                   currency FROM transfers
            UNION ALL
            SELECT transaction_id, credit_account_id, amount_micros, currency FROM transfers
        )
        SELECT transaction_id, sum(amount), count(DISTINCT currency) FROM legs
        GROUP BY transaction_id HAVING sum(amount) <> 0 OR count(DISTINCT currency) <> 1
        """,
    )
    for transaction_id, net, currencies in unbalanced:
        report.add(
            "ledger balanced",
            f"transaction {transaction_id}: net {net}, {currencies} currencies",
        )
    drift = _rows(
        connect,
        "billing",
        """
        SELECT a.id, a.kind, a.debits_posted, a.credits_posted,
               COALESCE(d.total, 0), COALESCE(c.total, 0)
          FROM accounts a
          LEFT JOIN (SELECT debit_account_id AS id, sum(amount_micros) AS total
                       FROM transfers GROUP BY 1) d ON d.id = a.id
          LEFT JOIN (SELECT credit_account_id AS id, sum(amount_micros) AS total
                       FROM transfers GROUP BY 1) c ON c.id = a.id
         WHERE a.debits_posted <> COALESCE(d.total, 0)
            OR a.credits_posted <> COALESCE(c.total, 0)
        """,
    )
    for account_id, kind, debits, credits, derived_d, derived_c in drift:
        report.add(
            "cached balance = derived",
            f"{kind} account {account_id}: cached {debits}/{credits}, "
            f"derived {derived_d}/{derived_c} (debits/credits)",
        )
    (transactions,) = _rows(
        connect, "billing", "SELECT count(DISTINCT transaction_id) FROM transfers"
    )[0]
    report.figures["ledger transactions"] = transactions
    if verify is None:
        report.add("cached balance = derived", "GET /v1/billing/ledger/verify did not answer")
    elif verify.get("ok") is not True:
        report.add("cached balance = derived", f"billing's ledger verify: {verify}")


def check_allocations(connect: Connect, report: Report) -> None:
    stuck = _rows(
        connect,
        "gpuaas",
        "SELECT id, state, reason, updated_at FROM allocations WHERE state <> ALL(%s)",
        list(FINAL_ALLOCATION_STATES),
    )
    for allocation_id, state, reason, updated_at in stuck:
        report.add(
            "allocation final",
            f"allocation {allocation_id} still {state} ({reason}) since {updated_at:%H:%M:%S}",
        )
    for state, count in _rows(
        connect, "gpuaas", "SELECT state, count(*) FROM allocations GROUP BY 1"
    ):
        report.figures[f"allocations {state}"] = count


def check_slices(connect: Connect, report: Report) -> None:
    overlaps = _rows(
        connect,
        "gpuaas",
        """
        SELECT a.gpu_id, a.allocation_id, b.allocation_id
          FROM allocation_instances a
          JOIN allocation_instances b
            ON a.gpu_id = b.gpu_id AND a.id < b.id
           AND a.start < b.start + b.memory AND b.start < a.start + a.memory
         WHERE a.released_at IS NULL AND b.released_at IS NULL
        """,
    )
    for gpu_id, first, second in overlaps:
        report.add("slice booked once", f"GPU {gpu_id}: {first} and {second} overlap")
    leaked = _rows(
        connect,
        "gpuaas",
        """
        SELECT s.gpu_id, s.slice, al.id, al.state
          FROM gpu_slices s
          JOIN allocation_instances i ON i.id = s.instance_id
          JOIN allocations al ON al.id = i.allocation_id
         WHERE al.state = ANY(%s)
        """,
        list(FINAL_ALLOCATION_STATES),
    )
    for gpu_id, slice_, allocation_id, state in leaked:
        report.add(
            "slice booked once",
            f"GPU {gpu_id} slice {slice_} still booked by {state} allocation {allocation_id}",
        )


def check_delivery(connect: Connect, report: Report, databases: tuple[str, ...]) -> None:
    events = 0
    for database in databases:
        rows = _rows(
            connect,
            database,
            "SELECT topic, count(*), count(*) FILTER (WHERE sent_at IS NULL)"
            " FROM outbox GROUP BY 1",
        )
        for topic, count, unsent in rows:
            events += count
            if unsent:
                report.add("event delivered", f"{database}: {unsent} {topic} rows never sent")
    report.figures["outbox events"] = events
    for publisher, topic, consumer_db, consumer in INBOX_CONSUMERS:
        if publisher not in databases or consumer_db not in databases:
            continue  # a run without that service
        published = {
            str(i)
            for (i,) in _rows(connect, publisher, "SELECT id FROM outbox WHERE topic = %s", topic)
        }
        if (consumer_db, consumer) == ("audit", AUDIT_LOG):
            query, params = "SELECT event_id FROM audit_leaves WHERE event_id = ANY(%s::uuid[])", ()
        else:
            query = "SELECT event_id FROM inbox WHERE consumer = %s AND event_id = ANY(%s::uuid[])"
            params = (consumer,)
        consumed = {
            str(i) for (i,) in _rows(connect, consumer_db, query, *params, sorted(published))
        }
        lost = published - consumed
        for event_id in sorted(lost)[:20]:
            report.add(
                "event delivered", f"{topic} {event_id} never reached {consumer_db}.{consumer}"
            )
        if len(lost) > 20:
            report.add("event delivered", f"... and {len(lost) - 20} more {topic} events")


def check_standing_projection(connect: Connect, report: Report) -> None:
    """At rest, gpuaas's balance-standing projection holds billing's last announcement."""
    announced = {
        str(t): (standing, seq)
        for t, standing, seq in _rows(
            connect,
            "billing",
            "SELECT id, standing, ledger_sequence FROM tenants WHERE ledger_sequence > 0",
        )
    }
    projected = {
        str(t): (standing, seq)
        for t, standing, seq in _rows(
            connect, "gpuaas", "SELECT tenant_id, standing, ledger_sequence FROM balance_standing"
        )
    }
    for tenant_id, (standing, seq) in sorted(announced.items()):
        got = projected.get(tenant_id)
        if got != (standing, seq):
            report.add(
                "event delivered",
                f"tenant {tenant_id}: billing announced {standing}@{seq}, gpuaas holds {got}",
            )


def _final_allocations(connect: Connect) -> set[str]:
    return {
        str(i)
        for (i,) in _rows(
            connect, "gpuaas", "SELECT id FROM allocations WHERE state = ANY(%s)",
            list(FINAL_ALLOCATION_STATES),
        )
    }  # fmt: skip


def outliving_sessions(connect: Connect, databases: tuple[str, ...]) -> list[tuple]:
    """Live terminal sessions whose allocation has finished."""
    if TERMINAL_DB not in databases:
        return []
    final = _final_allocations(connect)
    live = _rows(
        connect, TERMINAL_DB,
        "SELECT id, allocation_id, state FROM sessions WHERE state = ANY(%s)",
        list(LIVE_SESSION_STATES),
    )  # fmt: skip
    return [row for row in live if str(row[1]) in final]


def check_terminal_sessions(connect: Connect, report: Report, databases: tuple[str, ...]) -> None:
    if TERMINAL_DB not in databases:
        return
    for session_id, allocation_id, state in outliving_sessions(connect, databases):
        report.add(
            "no session outlives its allocation",
            f"session {session_id} still {state} on finished allocation {allocation_id}",
        )
    clean = _rows(
        connect, TERMINAL_DB,
        "SELECT id, recording_digest, recording_bytes FROM sessions"
        " WHERE state = 'closed' AND reason = ANY(%s)",
        list(CLEAN_ENDINGS),
    )  # fmt: skip
    events = {
        str(subject): json.loads(bytes(payload))
        for subject, payload in _rows(
            connect, TERMINAL_DB,
            "SELECT subject, payload FROM outbox WHERE type = 'terminal.session.closed'",
        )
    }  # fmt: skip
    for session_id, digest, size in clean:
        chunks = _rows(
            connect, TERMINAL_DB,
            "SELECT data FROM recording_chunks WHERE session_id = %s ORDER BY seq", session_id,
        )  # fmt: skip
        stored = b"".join(bytes(c) for (c,) in chunks)
        actual = "sha256:" + hashlib.sha256(stored).hexdigest()
        event_digest = events.get(str(session_id), {}).get("recording_digest")
        if not stored:
            report.add("recording kept", f"session {session_id} closed cleanly with no recording")
        elif digest != actual or size != len(stored) or event_digest != actual:
            report.add(
                "recording kept",
                f"session {session_id}: stored {len(stored)} bytes {actual[:19]}..., session says"
                f" {size} {str(digest)[:19]}..., its event {str(event_digest)[:19]}...",
            )
    for state, count in _rows(
        connect, TERMINAL_DB, "SELECT state, count(*) FROM sessions GROUP BY 1"
    ):
        report.figures[f"terminal sessions {state}"] = count


# A valid token may be refused while a fault lasts, and this long after it (issue 19: a
# verification step that fails closed must recover within 5 s of what it needs coming back).
REFUSAL_BOUND_S = 5.0


def check_refusals(
    report: Report,
    refusals: list[tuple[float, float, str]],
    faults: list[tuple[float, float]],
    bound_s: float = REFUSAL_BOUND_S,
) -> None:
    """Each run of 401s a tenant met with a token iam issued it, against the fault windows
    (injected -> its process, or every process after an infrastructure restart, ready
    again): refused longer than `bound_s` past the end of the last fault that began before
    the run ended is a violation. The load refreshes (or signs in again) at the first 401,
    so a long run means a verification step kept failing closed."""
    longest = 0.0
    for started, ended, where in refusals:
        began_before = [end for start, end in faults if start <= ended]
        back = max([*began_before, started])
        beyond = ended - max(started, back)
        longest = max(longest, beyond)
        if beyond > bound_s:
            report.add(
                "valid tokens accepted",
                f"{where}: refused with 401 for {ended - started:.1f} s, {beyond:.1f} s of it"
                f" after the faults were over (bound {bound_s:g} s)",
            )
    report.figures["longest refusal after a fault (ms)"] = int(longest * 1000)


def check_log_leaves(
    report: Report,
    leaves: list[tuple[int, str, bytes]],
    checkpoint: tuple[int, bytes] | None,
    first: int = 0,
) -> None:
    """`leaves` (index, source event id, leaf bytes) in index order; `checkpoint` the
    latest signed (size, root); `first` the first index retention kept. A restarted audit
    that lost or replayed a batch shows here as a gap, a duplicate or a foreign root."""
    report.figures["audit log leaves"] = len(leaves)
    expected = first
    for index, _, _ in leaves:
        if index != expected:
            report.add("audit log whole", f"leaf index {index} where {expected} was due")
            break
        expected += 1
    counts: dict[str, int] = defaultdict(int)
    for _, event_id, _ in leaves:
        counts[event_id] += 1
    for event_id, n in sorted(counts.items()):
        if n > 1:
            report.add("audit log whole", f"source event {event_id} is {n} leaves")
    if checkpoint is None:  # none signed yet (every N records or T s): nothing to recompute
        report.figures["audit log checkpoint size"] = 0
        return
    size, root = checkpoint
    if first:
        return  # the pruned prefix's hashes live only in the tiles: the service's tests cover it
    if size > len(leaves):
        report.add("audit log whole", f"checkpoint of size {size}, {len(leaves)} leaves stored")
        return
    recomputed = merkle.root([merkle.leaf_hash(leaf) for _, _, leaf in leaves[:size]])
    if recomputed != root:
        report.add(
            "audit log whole",
            f"checkpoint {size}: root {root.hex()[:16]}... but the leaves give"
            f" {recomputed.hex()[:16]}...",
        )


def check_audit_log(connect: Connect, report: Report) -> None:
    leaves = [
        (idx, str(event_id), bytes(leaf))
        for idx, event_id, leaf in _rows(
            connect, "audit", "SELECT idx, event_id, leaf FROM audit_leaves ORDER BY idx"
        )
    ]
    latest = _rows(
        connect, "audit", "SELECT size, root FROM audit_checkpoints ORDER BY size DESC LIMIT 1"
    )
    checkpoint = (latest[0][0], bytes(latest[0][1])) if latest else None
    pruned = _rows(connect, "audit", "SELECT coalesce(max(min_index), 0) FROM audit_prunes")
    check_log_leaves(report, leaves, checkpoint, pruned[0][0])


def audit(connect: Connect, databases: tuple[str, ...], verify: dict[str, Any] | None) -> Report:
    report = Report()
    check_usage(connect, report)
    check_ledger(connect, report, verify)
    check_allocations(connect, report)
    check_slices(connect, report)
    check_delivery(connect, report, databases)
    check_standing_projection(connect, report)
    check_terminal_sessions(connect, report, databases)
    if "audit" in databases:
        check_audit_log(connect, report)
    return report
