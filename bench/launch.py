"""Launch benchmark: allocation-to-running latency through the gateway on the devstack.

Needs the fleet running (`just up`): the gateway, iam, billing, gpuaas and the simulated
node agents. Setup (not timed): a scratch tenant signs up through the gateway; the operator
tops its wallet up through billing (an unfunded tenant is `exhausted`, and gpuaas refuses
it with 402), and the benchmark waits until gpuaas accepts an allocation for it.

Then N times in a row, for that tenant's default project: POST a MIG slice allocation
(Idempotency-Key), GET it every `--poll-ms` until `running`; that span, measured by the
client, is the headline. The allocation is then released and awaited until `released`
(reported apart), so each launch starts from the same free fleet.

The path a launch takes (docs/gpuaas.md): gpuaas places the slice and commits `scheduled`;
the node agent's held sync (long poll) is woken by the commit's NOTIFY and answers with
the new desired state; the agent creates the simulated instance and reports it running.
The client's poll adds up to one poll interval.
"""

import argparse
import datetime as dt
import os
import time
import uuid
from typing import Any

import httpx

from bench.common import environment, print_table, save_results, summarize_ms
from bench.report import Headline, Summary
from devstack import credentials, fleet, mail

SUMMARY = "allocation-to-running p50/p99 through the gateway (needs `just up`)"
# The devstack's gateway (GPUCLOUD_DEVSTACK_PORT_OFFSET shifts it with every port).
GATEWAY = f"http://127.0.0.1:{fleet.load().gateway.port}"
TARGET_P99_MS = 60.0  # issue 16, with the simulated node
TOP_UP_MICROS = 1_000_000_000  # 1,000 USD: far more than N short-lived slices cost
SETUP_TIMEOUT_S = 60.0
STATE_TIMEOUT_S = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--launches", type=int, default=30, help="sequential launches (30)")
    parser.add_argument("--sku", default="h100-80gb", help="GPU SKU (h100-80gb)")
    parser.add_argument("--profile", default="1g.10gb", help="MIG profile (1g.10gb)")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="GET interval (10 ms)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 launches")


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def _check(response: httpx.Response, *expected: int) -> dict[str, Any]:
    if response.status_code not in expected:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}:"
            f" {response.status_code} {response.text[:500]}"
        )
    return response.json() if response.content else {}


def sign_up(client: httpx.Client) -> tuple[str, str]:
    """A scratch tenant (and its default project) through iam's public sign-up."""
    slug = f"bench-{uuid.uuid4().hex[:10]}"
    body = mail.verified_sign_up(
        client,
        {
            "tenant_name": "Bench launch",
            "slug": slug,
            "email": f"owner@{slug}.example",
            "password": uuid.uuid4().hex + "Aa1!",
        },
        headers=_key(),
    )
    return body["tenant"]["id"], body["project"]["id"]


def fund(client: httpx.Client, tenant_id: str) -> float:
    """Operator top-up; retried while billing has not opened the wallet yet (it learns of
    the tenant from iam's event). Returns the seconds it took."""
    started = time.monotonic()
    key = _key()  # one top-up, however many tries
    while True:
        response = client.post(
            f"/v1/billing/tenants/{tenant_id}/top-ups",
            json={"amount_micros": TOP_UP_MICROS, "reference": "bench launch"},
            headers=key,
        )
        if response.status_code in (200, 201):
            return time.monotonic() - started
        if time.monotonic() - started > SETUP_TIMEOUT_S:
            _check(response, 201)
        time.sleep(0.2)


def wait_state(
    client: httpx.Client, path: str, states: set[str], poll_s: float, timeout: float
) -> tuple[dict[str, Any], float]:
    """GET `path` every poll_s until its state is one of `states`; (body, when seen)."""
    deadline = time.monotonic() + timeout
    while True:
        body = _check(client.get(path), 200)
        seen = time.perf_counter()
        if body["state"] in states:
            return body, seen
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} still {body['state']} after {timeout:g} s")
        time.sleep(poll_s)


class Launcher:
    def __init__(self, client: httpx.Client, base: str, args: argparse.Namespace) -> None:
        self.client, self.base, self.args = client, base, args
        self.poll_s = args.poll_ms / 1000

    def allocate(self) -> httpx.Response:
        return self.client.post(
            self.base,
            json={"sku": self.args.sku, "mig_profile": self.args.profile},
            headers=_key(),
        )

    def wait_accepted(self) -> float:
        """Until gpuaas has seen the top-up (no more 402) and the signed-up project (no
        more 404: it projects iam's project events), with one untimed launch."""
        started = time.monotonic()
        while True:
            response = self.allocate()
            if response.status_code == 201:
                self.release(response.json()["id"])
                return time.monotonic() - started
            waiting = response.status_code in (402, 404)
            if not waiting or time.monotonic() - started > SETUP_TIMEOUT_S:
                _check(response, 201)
            time.sleep(0.2)

    def launch(self) -> dict[str, float]:
        started = time.perf_counter()
        created = _check(self.allocate(), 201)
        posted = time.perf_counter()
        path = f"{self.base}/{created['id']}"
        body, running = wait_state(self.client, path, {"running"}, self.poll_s, STATE_TIMEOUT_S)
        released = self.release(created["id"])
        server = _server_span(body)
        return {
            "to_running": running - started,
            "post": posted - started,
            "server_to_running": server if server is not None else float("nan"),
            "release_to_released": released,
        }

    def release(self, allocation_id: str) -> float:
        path = f"{self.base}/{allocation_id}"
        started = time.perf_counter()
        _check(self.client.post(f"{path}/release", headers=_key()), 202)
        _, seen = wait_state(self.client, path, {"released"}, self.poll_s, STATE_TIMEOUT_S)
        return seen - started


def _server_span(body: dict[str, Any]) -> float | None:
    """created_at -> running_since, as gpuaas recorded them (no client poll in it)."""
    if not body.get("running_since"):
        return None
    created = dt.datetime.fromisoformat(body["created_at"])
    return (dt.datetime.fromisoformat(body["running_since"]) - created).total_seconds()


def main(args: argparse.Namespace) -> int:
    if args.quick:
        args.launches = 5
    token = credentials.password(credentials.OPERATOR_TOKEN)
    results: dict[str, Any] = {
        "benchmark": "launch",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": vars(args),
        "environment": environment(),
    }
    with httpx.Client(
        base_url=GATEWAY, timeout=15.0, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        tenant_id, project_id = sign_up(client)
        base = f"/v1/gpu/tenants/{tenant_id}/projects/{project_id}/allocations"
        launcher = Launcher(client, base, args)
        results["setup"] = {
            "tenant_id": tenant_id,
            "top_up_s": round(fund(client, tenant_id), 2),
            "until_accepted_s": round(launcher.wait_accepted(), 2),
        }
        print(f"launch: {args.launches} sequential {args.sku} {args.profile} launches ...")
        runs = [launcher.launch() for _ in range(args.launches)]
    results["environment"]["load_average_1m_end"] = os.getloadavg()[0]
    for name in ("to_running", "post", "server_to_running", "release_to_released"):
        results[name] = summarize_ms([r[name] for r in runs if r[name] == r[name]])  # no NaN
    p99 = results["to_running"]["p99_ms"]
    results["target"] = {"p99_ms": TARGET_P99_MS, "met": p99 <= TARGET_P99_MS}
    _report(results)
    print(f"\nresults: {save_results('launch', results)}")
    return 0


def _report(results: dict[str, Any]) -> None:
    env = results["environment"]
    print(
        f"\nhost: {env['cpus']} CPUs, load average {env['load_average_1m']:.2f} before,"
        f" {env['load_average_1m_end']:.2f} after; setup: top-up took"
        f" {results['setup']['top_up_s']} s, gpuaas accepted the tenant after"
        f" {results['setup']['until_accepted_s']} s"
    )
    names = {
        "to_running": "POST -> seen running (client)",
        "post": "  POST answered (201)",
        "server_to_running": "  created_at -> running_since (gpuaas)",
        "release_to_released": "release -> seen released (client)",
    }
    fields = ("count", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")
    print_table(
        f"launch latency in ms ({results['args']['profile']}, poll every"
        f" {results['args']['poll_ms']:g} ms)",
        ["span", "count", "p50", "p90", "p99", "max", "mean"],
        [[label, *(results[k].get(f) for f in fields)] for k, label in names.items()],
    )
    print(
        f"\ntarget: p99 <= {TARGET_P99_MS:g} ms: {'met' if results['target']['met'] else 'NOT met'}"
    )


def headlines(results: dict[str, Any]) -> Summary:
    """The common schema (bench/report.py): POST -> running p99 against the synchronous part
    (POST answered) of the same launches."""
    return Summary(
        headlines=[
            Headline(
                "POST -> seen running p99",
                results["to_running"].get("p99_ms"),
                "ms",
                better="lower",
                baseline=results["post"].get("p99_ms"),
                baseline_name="POST answered p99",
                target=TARGET_P99_MS,
            )
        ],
        latencies={
            "POST -> seen running": results["to_running"],
            "POST answered": results["post"],
            "release -> seen released": results["release_to_released"],
        },
    )
