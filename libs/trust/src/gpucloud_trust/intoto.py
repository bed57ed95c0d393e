"""in-toto Statement v1 and the predicates the platform uses, carried in DSSE envelopes
(payload type ``application/vnd.in-toto+json``).

A statement says something (its predicate) about artifacts named by digest (its subject)::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "...", "digest": {"sha256": "<hex>"}}],
     "predicateType": "<URI>", "predicate": {...}}

Predicates:
- ``RELEASE`` (gpucloud): "this bundle is release <version> of app <app> of tenant <tenant>";
  the signature a launch gate counts. Binding app, version and tenant stops a signature being
  replayed onto another release that happens to reuse the bytes.
- ``SLSA_PROVENANCE`` (https://slsa.dev/provenance/v1): how the bundle was built
  (buildDefinition, runDetails), as SLSA writes it.
- ``EVIDENCE`` (gpucloud): a reference to evidence recorded elsewhere (a UAT run, a security
  scan): its kind, where it is, and the digest of the evidence document if it has one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpucloud_trust.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, sign
from gpucloud_trust.keys import SigningKey

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
RELEASE = "https://gpucloud.dev/attestations/release/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
EVIDENCE = "https://gpucloud.dev/attestations/evidence-reference/v1"
SHA256_HEX_LEN = 64


class InvalidStatement(ValueError):
    """A payload that is not an in-toto Statement v1 (or a predicate missing its fields)."""


@dataclass(frozen=True)
class Subject:
    name: str
    sha256: str  # hex, lowercase

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "digest": {"sha256": self.sha256}}

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha256


@dataclass(frozen=True)
class Statement:
    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "_type": STATEMENT_TYPE,
            "subject": [s.to_dict() for s in self.subjects],
            "predicateType": self.predicate_type,
            "predicate": dict(self.predicate),
        }

    def to_json(self) -> bytes:
        # Sorted keys and no spaces: the same statement always serialises to the same bytes.
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    def sign(self, signers: Sequence[SigningKey]) -> Envelope:
        return sign(IN_TOTO_PAYLOAD_TYPE, self.to_json(), signers)

    def names_digest(self, digest: str) -> bool:
        """Whether one subject is the artifact `digest` (``sha256:<hex>``)."""
        return any(s.digest == digest for s in self.subjects)

    @classmethod
    def parse(cls, payload: bytes) -> Statement:
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidStatement(f"not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("_type") != STATEMENT_TYPE:
            raise InvalidStatement(f"_type must be {STATEMENT_TYPE}")
        predicate_type = data.get("predicateType")
        if not isinstance(predicate_type, str) or not predicate_type:
            raise InvalidStatement("predicateType is required")
        predicate = data.get("predicate", {})
        if not isinstance(predicate, dict):
            raise InvalidStatement("predicate must be an object")
        raw_subjects = data.get("subject")
        if not isinstance(raw_subjects, list) or not raw_subjects:
            raise InvalidStatement("subject must be a non-empty list")
        subjects = []
        for i, item in enumerate(raw_subjects):
            digest = item.get("digest") if isinstance(item, dict) else None
            value = digest.get("sha256") if isinstance(digest, dict) else None
            if not _is_sha256_hex(value):
                raise InvalidStatement(f"subject[{i}].digest.sha256 must be 64 lowercase hex")
            name = item.get("name", "")
            if not isinstance(name, str):
                raise InvalidStatement(f"subject[{i}].name must be a string")
            subjects.append(Subject(name, value))
        return cls(tuple(subjects), predicate_type, predicate)


def _is_sha256_hex(value: Any) -> bool:
    return (
        isinstance(value, str)
        and len(value) == SHA256_HEX_LEN
        and all(c in "0123456789abcdef" for c in value)
    )


def subject_for(digest: str, name: str = "bundle") -> Subject:
    """The subject naming an artifact by its ``sha256:<hex>`` digest."""
    algorithm, _, hexpart = digest.partition(":")
    if algorithm != "sha256" or not _is_sha256_hex(hexpart):
        raise InvalidStatement(f"not a sha256 digest: {digest!r}")
    return Subject(name, hexpart)


def release_statement(
    manifest_digest: str, *, tenant: str, app: str, version: str, name: str | None = None
) -> Statement:
    return Statement(
        (subject_for(manifest_digest, name or f"{app}@{version}"),),
        RELEASE,
        {"tenant": tenant, "app": app, "version": version},
    )


def provenance_statement(
    manifest_digest: str,
    *,
    build_type: str,
    builder_id: str,
    external_parameters: Mapping[str, Any],
    resolved_dependencies: Sequence[Mapping[str, Any]] = (),
    invocation_id: str | None = None,
    started_on: str | None = None,
    finished_on: str | None = None,
    name: str = "bundle",
) -> Statement:
    """A SLSA provenance v1 statement (buildDefinition + runDetails)."""
    metadata = {
        k: v
        for k, v in (
            ("invocationId", invocation_id),
            ("startedOn", started_on),
            ("finishedOn", finished_on),
        )
        if v is not None
    }
    run_details: dict[str, Any] = {"builder": {"id": builder_id}}
    if metadata:
        run_details["metadata"] = metadata
    build_definition: dict[str, Any] = {
        "buildType": build_type,
        "externalParameters": dict(external_parameters),
    }
    if resolved_dependencies:
        build_definition["resolvedDependencies"] = [dict(d) for d in resolved_dependencies]
    return Statement(
        (subject_for(manifest_digest, name),),
        SLSA_PROVENANCE,
        {"buildDefinition": build_definition, "runDetails": run_details},
    )


def evidence_statement(
    manifest_digest: str,
    *,
    kind: str,
    uri: str,
    evidence_digest: str | None = None,
    recorded_at: str | None = None,
    name: str = "bundle",
) -> Statement:
    """A reference to evidence of `kind` (e.g. ``uat``, ``security-scan``) about the bundle."""
    predicate: dict[str, Any] = {"kind": kind, "uri": uri}
    if evidence_digest is not None:
        predicate["digest"] = evidence_digest
    if recorded_at is not None:
        predicate["recordedAt"] = recorded_at
    return Statement((subject_for(manifest_digest, name),), EVIDENCE, predicate)


def check_predicate(statement: Statement) -> None:
    """The fields each known predicate must carry (unknown predicate types pass through)."""
    p = statement.predicate
    if statement.predicate_type == RELEASE:
        for key in ("tenant", "app", "version"):
            if not isinstance(p.get(key), str) or not p[key]:
                raise InvalidStatement(f"release predicate needs {key}")
    elif statement.predicate_type == SLSA_PROVENANCE:
        build = p.get("buildDefinition")
        run = p.get("runDetails")
        if not isinstance(build, dict) or not isinstance(build.get("buildType"), str):
            raise InvalidStatement("provenance needs buildDefinition.buildType")
        if not isinstance(run, dict) or not isinstance(run.get("builder"), dict):
            raise InvalidStatement("provenance needs runDetails.builder")
        if not isinstance(run["builder"].get("id"), str):
            raise InvalidStatement("provenance needs runDetails.builder.id")
    elif statement.predicate_type == EVIDENCE:
        for key in ("kind", "uri"):
            if not isinstance(p.get(key), str) or not p[key]:
                raise InvalidStatement(f"evidence reference needs {key}")
