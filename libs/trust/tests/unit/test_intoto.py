import json

import pytest

from gpucloud_trust import dsse, intoto
from gpucloud_trust.digests import digest_bytes
from gpucloud_trust.keys import SigningKey

DIGEST = digest_bytes(b"manifest")


def test_a_release_statement_is_an_in_toto_statement_v1():
    statement = intoto.release_statement(DIGEST, tenant="t", app="a", version="1.0.0")
    data = json.loads(statement.to_json())
    assert data == {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "a@1.0.0", "digest": {"sha256": DIGEST.removeprefix("sha256:")}}],
        "predicateType": intoto.RELEASE,
        "predicate": {"tenant": "t", "app": "a", "version": "1.0.0"},
    }
    assert intoto.Statement.parse(statement.to_json()) == statement


def test_a_signed_statement_round_trips_through_dsse():
    key = SigningKey.generate()
    envelope = intoto.evidence_statement(
        DIGEST, kind="security-scan", uri="https://scanner.example/r/1"
    ).sign([key])
    verified = dsse.verify(dsse.Envelope.from_json(envelope.to_json()), [key.public])
    statement = intoto.Statement.parse(verified.payload)
    intoto.check_predicate(statement)
    assert statement.predicate["kind"] == "security-scan"
    assert statement.names_digest(DIGEST)


def test_provenance_follows_slsa_v1():
    statement = intoto.provenance_statement(
        DIGEST,
        build_type="https://gpucloud.dev/build/bundle/v1",
        builder_id="https://ci.example/runner",
        external_parameters={"ref": "main"},
        invocation_id="run-7",
    )
    intoto.check_predicate(statement)
    predicate = statement.predicate
    assert predicate["buildDefinition"]["externalParameters"] == {"ref": "main"}
    assert predicate["runDetails"]["metadata"] == {"invocationId": "run-7"}
    assert statement.predicate_type == "https://slsa.dev/provenance/v1"


@pytest.mark.parametrize(
    "payload",
    [
        b"{}",
        b'{"_type": "https://in-toto.io/Statement/v0.1"}',
        json.dumps({"_type": intoto.STATEMENT_TYPE, "predicateType": "x", "subject": []}).encode(),
        json.dumps(
            {
                "_type": intoto.STATEMENT_TYPE,
                "predicateType": "x",
                "subject": [{"name": "b", "digest": {"sha256": "ABC"}}],
            }
        ).encode(),
    ],
)
def test_malformed_statements_are_refused(payload):
    with pytest.raises(intoto.InvalidStatement):
        intoto.Statement.parse(payload)


def test_predicates_missing_their_fields_are_refused():
    statement = intoto.Statement((intoto.subject_for(DIGEST),), intoto.EVIDENCE, {"kind": "uat"})
    with pytest.raises(intoto.InvalidStatement, match="uri"):
        intoto.check_predicate(statement)
