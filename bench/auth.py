"""Access-token verification rate inside a service, and sign-in latency through the gateway.

Needs the fleet running (`just up`). It signs up a scratch tenant, signs its owner in, then:

1. verifies that access token in a loop with platformkit's `AccessTokenVerifier` (the
   RFC 8725 checks every service runs: pinned EdDSA, iss, aud, exp, nbf, typ, JWKS from
   iam cached) and, in the same run, with a bare `jwt.decode` of the same token and key
   (signature and exp only) as the baseline; reports both rates and their ratio;
2. signs in N times in a row (password grant, argon2id) and reports p50/p99.
"""

import argparse
import asyncio
import time
import uuid
from typing import Any

import httpx
import jwt

from bench.common import environment, print_table, save_results, summarize_ms
from bench.report import Headline, Summary
from devstack import fleet, mail
from platformkit.settings import ServiceSettings
from platformkit.tokens import verifier_from_settings

SUMMARY = "token verifications/s in a service and sign-in p50/p99 (needs `just up`)"
# The devstack's gateway (GPUCLOUD_DEVSTACK_PORT_OFFSET shifts it with every port).
GATEWAY = f"http://127.0.0.1:{fleet.load().gateway.port}"
IAM = f"http://127.0.0.1:{fleet.load().find('iam').port}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=5.0, help="verification loop length")
    parser.add_argument("--sign-ins", type=int, default=60, help="sequential sign-ins")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s loops, 10 sign-ins")


def _sign_up(client: httpx.Client) -> tuple[str, str]:
    slug = f"bench-{uuid.uuid4().hex[:10]}"
    email, password = f"owner@{slug}.example", uuid.uuid4().hex + "Aa1!"
    body = {"tenant_name": "Bench", "slug": slug, "email": email, "password": password}
    mail.verified_sign_up(client, body)
    return email, password


def _sign_in(client: httpx.Client, email: str, password: str) -> str:
    response = client.post(
        "/v1/iam/token",
        data={"grant_type": "password", "username": email, "password": password},
    )
    response.raise_for_status()
    return response.json()["access_token"]


async def _verify_rate(token: str, seconds: float) -> tuple[float, float]:
    settings = ServiceSettings.from_env("bench")
    verifier = verifier_from_settings(
        f"{IAM}/v1/iam/.well-known/jwks.json",
        issuer=f"{GATEWAY}/v1/iam",  # what devstack gives its services (processes.py)
        audience=settings.token_audience,
    )
    await verifier.verify(token)  # warm the JWKS cache
    count, deadline = 0, time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(200):
            await verifier.verify(token)
        count += 200
    platform_rate = count / (time.perf_counter() - started)

    key = await verifier.keys.key(jwt.get_unverified_header(token)["kid"])
    count, deadline = 0, time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(200):
            jwt.decode(token, key.key, algorithms=["EdDSA"], options={"verify_aud": False})
        count += 200
    bare_rate = count / (time.perf_counter() - started)
    return platform_rate, bare_rate


def main(args: argparse.Namespace) -> int:
    if args.quick:
        args.seconds, args.sign_ins = 1.0, 10
    with httpx.Client(base_url=GATEWAY, timeout=30.0) as client:
        email, password = _sign_up(client)
        token = _sign_in(client, email, password)
        durations = []
        for _ in range(args.sign_ins):
            started = time.perf_counter()
            _sign_in(client, email, password)
            durations.append(time.perf_counter() - started)
    platform_rate, bare_rate = asyncio.run(_verify_rate(token, args.seconds))
    sign_in = summarize_ms(durations)
    results: dict[str, Any] = {
        "benchmark": "auth",
        "environment": environment(),
        "verify_per_s": round(platform_rate),
        "bare_pyjwt_decode_per_s": round(bare_rate),
        "verify_to_bare_ratio": round(platform_rate / bare_rate, 3),
        "sign_in_ms": sign_in,
    }
    print_table(
        "access tokens and sign-in",
        ["figure", "value"],
        [
            ["verifications/s (AccessTokenVerifier)", results["verify_per_s"]],
            ["baseline: bare jwt.decode/s, same token", results["bare_pyjwt_decode_per_s"]],
            ["ratio verifier / baseline", results["verify_to_bare_ratio"]],
            [f"sign-in p50 ms ({args.sign_ins} in a row, via gateway)", sign_in["p50_ms"]],
            ["sign-in p99 ms", sign_in["p99_ms"]],
        ],
    )
    print(f"results: {save_results('auth', results)}")
    return 0


def headlines(results: dict[str, Any]) -> Summary:
    """The common schema (bench/report.py): the kit's verifier against a bare decode."""
    return Summary(
        headlines=[
            Headline(
                "token verifications",
                results["verify_per_s"],
                "verifications/s",
                baseline=results["bare_pyjwt_decode_per_s"],
                baseline_name="bare jwt.decode",
            ),
            Headline("sign-in p99", results["sign_in_ms"].get("p99_ms"), "ms", better="lower"),
        ],
        latencies={"sign-in (password grant)": results["sign_in_ms"]},
    )
