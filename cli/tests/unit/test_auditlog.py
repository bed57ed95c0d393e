"""`gpucloud audit verify`'s checks against a simulated fleet log built with the same
library the audit service uses (gpucloud_trust): two tenants' records interleaved, served
as the audit API serves them (base64 leaves and proofs), with each kind of lie planted."""

import base64
import datetime as dt

from gpucloud_cli.auditlog import Pin, compare_witness, verify_trail
from gpucloud_trust.checkpoint import Checkpoint
from gpucloud_trust.merkle import leaf_hash
from gpucloud_trust.note import Signer
from gpucloud_trust.records import Actor, AuditRecord, Target, encode_record
from gpucloud_trust.tiles import TiledLog

ORIGIN = "audit.gpucloud.test/fleet"
KEY = Signer.generate(ORIGIN)
T0 = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
MINE, OTHER = "tenant-a", "tenant-b"


def record(n: int, tenant: str, seq: int, action: str = "gpuaas.allocation.running") -> bytes:
    return encode_record(
        AuditRecord(
            event_id=f"e-{n}",
            event_type=action,
            time=T0 + dt.timedelta(seconds=n),
            actor=Actor(subject="u-1", kind="user", tenant=tenant),
            action=action,
            target=Target(kind="allocation", id=f"a-{n}", tenant=tenant),
            outcome="success",
            service="gpuaas",
            details={"tenant_seq": seq},
        )
    )


class Log:
    def __init__(self, leaves: list[bytes], signer: Signer = KEY) -> None:
        self.leaves, self.signer = leaves, signer
        self.tree = TiledLog()
        self.tree.append([leaf_hash(x) for x in leaves])

    def note(self, size: int | None = None) -> str:
        size = self.tree.size if size is None else size
        cp = Checkpoint(ORIGIN, size, self.tree.root(size), T0 + dt.timedelta(minutes=size))
        return cp.sign(self.signer).decode()

    def served(self, tenant: str, size: int | None = None) -> list[dict]:
        size = self.tree.size if size is None else size
        mine = [i for i in range(size) if (i % 3 != 2) == (tenant == MINE)]
        return [self.entry(i, size) for i in mine]

    def entry(self, index: int, size: int, leaf: bytes | None = None) -> dict:
        return {
            "index": index,
            "leaf": base64.b64encode(leaf or self.leaves[index]).decode(),
            "proof": [base64.b64encode(h).decode() for h in self.tree.inclusion_proof(index, size)],
        }

    def consistency(self, first: int) -> list[str]:
        return [base64.b64encode(h).decode() for h in self.tree.consistency_proof(first)]


def fleet(count: int) -> list[bytes]:
    """Indices 0, 1, 3, 4, ... are MINE (seq 1, 2, ...); 2, 5, ... the other tenant's."""
    leaves, seqs = [], {MINE: 0, OTHER: 0}
    for n in range(count):
        tenant = OTHER if n % 3 == 2 else MINE
        seqs[tenant] += 1
        leaves.append(record(n, tenant, seqs[tenant]))
    return leaves


LOG = Log(fleet(30))


def pin_at(log: Log, size: int, seq: int) -> Pin:
    return Pin("http://gw", ORIGIN, KEY.verifier.vkey, log.note(size), size, {MINE: seq})


def check(log: Log, records: list[dict], pinned: Pin | None = None, **kw):
    return verify_trail(
        vkey=kw.get("vkey", KEY.verifier.vkey),
        origin=ORIGIN,
        latest_note=kw.get("latest", log.note()),
        pinned=pinned,
        consistency=log.consistency(pinned.size) if pinned else None,
        records=records,
        tenant_id=MINE,
    )


def test_an_honest_trail_verifies_and_reports_its_last_sequence() -> None:
    first = check(LOG, LOG.served(MINE))
    assert first.ok and first.records == first.checked == 20 and first.last_seq == 20
    later = check(LOG, LOG.served(MINE), pin_at(LOG, 12, 8))
    assert later.ok and later.size == 30


def test_a_tampered_record_is_found_at_its_index() -> None:
    served = LOG.served(MINE)
    served[4] = LOG.entry(6, 30, leaf=record(6, MINE, 5, action="gpuaas.allocation.released"))
    outcome = check(LOG, served)
    assert outcome.finding is not None
    assert (outcome.finding.kind, outcome.finding.index) == ("tampered", 6)


def test_a_withheld_record_is_a_gap_in_the_tenant_sequence() -> None:
    served = LOG.served(MINE)
    del served[5]  # index 7, seq 6: its neighbours' proofs still verify
    outcome = check(LOG, served)
    assert outcome.finding is not None
    assert (outcome.finding.kind, outcome.finding.index) == ("withheld", 9)


def test_a_trail_cut_short_of_what_an_earlier_run_saw_is_withheld() -> None:
    served = [r for r in LOG.served(MINE) if r["index"] < 20]
    outcome = check(LOG, served, pin_at(LOG, 27, 18))  # 14 records served, 18 seen before
    assert outcome.finding is not None and outcome.finding.kind == "withheld"
    assert "ends at tenant_seq 14; an earlier run saw 18" in outcome.finding.detail


def test_a_rewritten_history_is_a_fork_against_the_pinned_checkpoint() -> None:
    forged = fleet(30)
    forged[3] = record(3, MINE, 3, action="iam.membership.revoked")
    rewritten = Log(forged)  # same key: the log itself lies
    outcome = check(rewritten, rewritten.served(MINE), pin_at(LOG, 12, 8))
    assert outcome.finding is not None and outcome.finding.kind == "fork"


def test_a_smaller_tree_than_the_pinned_one_is_refused() -> None:
    small = Log(fleet(10))
    outcome = verify_trail(
        vkey=KEY.verifier.vkey,
        origin=ORIGIN,
        latest_note=small.note(),
        pinned=pin_at(LOG, 20, 13),
        consistency=[],
        records=small.served(MINE),
        tenant_id=MINE,
    )
    assert outcome.finding is not None and outcome.finding.kind == "tree_shrank"


def test_a_checkpoint_signed_by_another_key_is_refused() -> None:
    impostor = Log(fleet(30), signer=Signer.generate(ORIGIN))
    outcome = check(impostor, impostor.served(MINE))
    assert outcome.finding is not None and outcome.finding.kind == "bad_signature"


def test_another_tenants_record_in_my_trail_is_refused() -> None:
    served = LOG.served(MINE)
    served.insert(2, LOG.entry(2, 30))  # index 2 is the other tenant's
    outcome = check(LOG, served)
    assert outcome.finding is not None
    assert (outcome.finding.kind, outcome.finding.index) == ("foreign_record", 2)


def test_the_witness_agrees_with_an_extension_either_way_and_catches_a_fork() -> None:
    def against(witness: Log, size: int, latest: Log = LOG) -> str | None:
        first, second = sorted((size, latest.tree.size))
        prover = latest if latest.tree.size >= size else witness  # audit serves the proof
        proof = [base64.b64encode(h).decode() for h in prover.tree.consistency_proof(first, second)]
        found = compare_witness(
            vkey=KEY.verifier.vkey,
            origin=ORIGIN,
            latest_note=latest.note(),
            witness_note=witness.note(size),
            proof=proof,
        )
        return found.kind if found else None

    assert against(LOG, 12) is None  # the witness lags: audit's tree extends it
    assert against(LOG, 30) is None  # the same checkpoint
    longer = Log(fleet(40))
    assert against(longer, 40, latest=Log(fleet(30))) is None  # audit lags behind the witness
    forked = fleet(30)
    forked[1] = record(1, MINE, 2, action="iam.user.mfa_enabled")
    assert against(Log(forked), 12) == "fork"  # registry saw another history
    assert against(Log(forked), 30) == "fork"
