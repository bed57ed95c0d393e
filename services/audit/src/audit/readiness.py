"""Readiness evidence of a deploy (issue 15 item 5): wait until every named service reports
ready in audit's status model (its heartbeats), then record one `readiness` evidence record
per service version through the operator evidence route, so "which build of <service> is
running, and did its readiness pass" has one readback:
GET /v1/audit/evidence?subject=<digest>&kind=readiness.

    python -m audit.readiness --audit-url http://gpucloud-audit:8000 \\
        --services iam,billing,gpuaas --release gpucloud-7 [--timeout-s 300]

The Helm chart runs it as a post-install/post-upgrade hook Job (deploy/helm, jobs.yaml)
with the operator token in GPUCLOUD_OPERATOR_TOKEN. The subject of a service's record is
the SHA-256 of its canonical `{"git_sha", "service", "version"}`; the Idempotency-Key names
the release and the outcome, so a retried Job records nothing twice. A service still not
ready at the deadline is recorded as `fail` and the Job exits 1 (the release fails).
"""

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx


def subject_of(service: Mapping[str, Any]) -> str:
    version = {k: service.get(k) for k in ("service", "version", "git_sha")}
    canonical = json.dumps(version, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def wait_ready(
    client: httpx.Client,
    names: Sequence[str],
    timeout_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, dict[str, Any]]:
    """Each named service's status entry, polled until all are ready or the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen: dict[str, dict[str, Any]] = {}
        answer = client.get("/v1/audit/status")
        if answer.status_code == 200:
            seen = {s["name"]: s for s in answer.json()["services"] if s["name"] in names}
        if all(seen.get(n, {}).get("ready") for n in names) or time.monotonic() >= deadline:
            return {n: seen.get(n, {"name": n, "ready": False}) for n in names}
        sleep(2.0)


def record(client: httpx.Client, release: str, status: Mapping[str, Any]) -> str:
    service = {
        "service": status["name"],
        "version": status.get("version"),
        "git_sha": status.get("git_sha"),
    }
    outcome = "pass" if status.get("ready") else "fail"
    digest = subject_of(service)
    made = client.post(
        "/v1/audit/evidence",
        json={
            "kind": "readiness",
            "subject_digest": digest,
            "outcome": outcome,
            "details": {**service, "deploy": "helm", "release": release},
        },
        headers={"Idempotency-Key": f"readiness-{release}-{status['name']}-{outcome}"},
    )
    made.raise_for_status()
    return f"{status['name']} {service['version']}: {outcome} ({digest[:19]}...)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audit.readiness", description=__doc__)
    parser.add_argument("--audit-url", required=True)
    parser.add_argument("--services", required=True, help="comma-separated service names")
    parser.add_argument("--release", required=True, help="the release (name-revision)")
    parser.add_argument("--timeout-s", type=float, default=300.0)
    args = parser.parse_args(argv)
    names = [n for n in args.services.split(",") if n]
    token = os.environ["GPUCLOUD_OPERATOR_TOKEN"]
    with httpx.Client(
        base_url=args.audit_url, timeout=10.0, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        statuses = wait_ready(client, names, args.timeout_s)
        for status in statuses.values():
            print(record(client, args.release, status), flush=True)
    return 0 if all(s.get("ready") for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
