"""CLI benchmark: `gpucloud --help` cold start and `gpucloud ps --json` end to end, against
`curl` of the same API call in the same run.

Needs a running stack and a signed-in context: the current context of $GPUCLOUD_CONFIG_DIR
(default ~/.config/gpucloud; `gpucloud login` first), or `--sign-up` (devstack only): a
scratch tenant signs up through the gateway and `gpucloud login` signs its owner in, into a
temporary config directory.

Every sample is a new process (what a user or a script pays per command), run one after
the other and interleaved (help, ps, curl, help, ...) so that all three see the same
machine. `python -c pass` (the same interpreter) is the floor under both gpucloud rows;
curl, the same GET with the same bearer token, is the floor of the ps row (network, gateway
and gpuaas included); `import click` and `import gpucloud_cli.sdk.client` (the SDK on the
standard library's http.client, and its models) show where a command's start-up goes.
Targets from issue 17: help p50 300 ms, ps --json p50 150 ms.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.common import environment, print_table, save_results, summarize_ms
from bench.report import Headline, Summary

SUMMARY = "gpucloud --help cold start, ps --json end to end vs curl (needs a stack + login)"
TARGET_HELP_MS = 300.0
TARGET_PS_MS = 150.0
# sample -> (label, target p50 ms); the python rows split a command's start-up
ROWS: dict[str, tuple[str, float | None]] = {
    "help": ("gpucloud --help", TARGET_HELP_MS),
    "ps": ("gpucloud ps --json", TARGET_PS_MS),
    "curl": ("curl, same GET", None),
    "python": ("python -c pass", None),
    "click": ("python -c 'import click'", None),
    "sdk": ("python -c 'import gpucloud_cli.sdk.client'", None),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=30, help="samples of each (30)")
    parser.add_argument(
        "--sign-up", action="store_true", help="sign up a scratch tenant (devstack) first"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 samples")


def _timed(
    argv: list[str], env: dict[str, str]
) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall time, and CPU time (user + system) of the child: on a shared machine the CPU
    time moves less with the load than the wall time does."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done


def _sign_up_and_login(gpucloud: str, env: dict[str, str]) -> None:
    from devstack.fleet import load
    from devstack.processes import url

    gateway = url(load().gateway)
    slug = f"bench-cli-{uuid.uuid4().hex[:8]}"
    email, password = f"owner@{slug}.example", uuid.uuid4().hex + "Aa1!"
    body = {"tenant_name": "Bench", "slug": slug, "email": email, "password": password}
    from devstack import mail

    with httpx.Client(base_url=gateway, timeout=30) as client:
        mail.verified_sign_up(client, body)
    done = subprocess.run(
        [gpucloud, "--gateway", gateway, "login", "--email", email, "--password-stdin"],
        input=password + "\n",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"gpucloud login: {done.stderr}")


def _curl_command(env: dict[str, str]) -> list[str]:
    """The same GET as `gpucloud ps --json` (first page), with the context's current token,
    read again before every sample: the `gpucloud ps` sample just before renews it when it
    is about to expire."""
    from gpucloud_cli.config import Store

    state = Store(Path(env["GPUCLOUD_CONFIG_DIR"])).load()
    context = state.context()
    if context is None or context.project_id is None:
        raise RuntimeError("no current context with a project: `gpucloud login` first")
    token = state.sessions[context.session].access_token
    path = f"/v1/gpu/tenants/{context.tenant_id}/projects/{context.project_id}/allocations"
    return [
        "curl", "-sS", "-f", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}",
        f"{context.gateway}{path}?limit=500",
    ]  # fmt: skip


def main(args: argparse.Namespace) -> int:
    runs = 5 if args.quick else args.runs
    gpucloud = shutil.which("gpucloud") or str(Path(sys.executable).with_name("gpucloud"))
    if shutil.which("curl") is None:
        print("curl is needed for the baseline", file=sys.stderr)
        return 2
    env = dict(os.environ)
    scratch = None
    if args.sign_up:
        scratch = tempfile.TemporaryDirectory(prefix="gpucloud-bench-")
        env["GPUCLOUD_CONFIG_DIR"] = scratch.name
        _sign_up_and_login(gpucloud, env)
    else:
        from gpucloud_cli.config import config_dir

        env.setdefault("GPUCLOUD_CONFIG_DIR", str(config_dir()))
    try:
        _, _, whoami = _timed([gpucloud, "whoami", "--json"], env)
        if whoami.returncode != 0:
            print(f"not signed in: {whoami.stdout or whoami.stderr}", file=sys.stderr)
            return 2
        samples: dict[str, list[float]] = {name: [] for name in ROWS}
        cpu: dict[str, list[float]] = {name: [] for name in ROWS}
        argv = {
            "python": [sys.executable, "-c", "pass"],
            "click": [sys.executable, "-c", "import click"],
            "sdk": [sys.executable, "-c", "import gpucloud_cli.sdk.client"],
            "help": [gpucloud, "--help"],
            "ps": [gpucloud, "ps", "--json"],
            "curl": [],
        }
        for _ in range(runs + 1):  # the first round warms the page cache, not counted
            for name, command in argv.items():
                seconds, cpu_s, done = _timed(command or _curl_command(env), env)
                if done.returncode != 0:
                    raise RuntimeError(f"{name}: exit {done.returncode}: {done.stderr[:500]}")
                if name == "ps":
                    json.loads(done.stdout)  # one JSON document
                samples[name].append(seconds)
                cpu[name].append(cpu_s)
        samples = {name: values[1:] for name, values in samples.items()}
        cpu = {name: values[1:] for name, values in cpu.items()}
    finally:
        if scratch is not None:
            scratch.cleanup()
    summary = {name: summarize_ms(values) for name, values in samples.items()}
    cpu_summary = {name: summarize_ms(values) for name, values in cpu.items()}
    results: dict[str, Any] = {
        "benchmark": "cli",
        "environment": environment(),
        "runs": runs,
        "ms": summary,
        "cpu_ms": cpu_summary,
        "targets_ms": {"help_p50": TARGET_HELP_MS, "ps_json_p50": TARGET_PS_MS},
        "ps_minus_curl_p50_ms": round(summary["ps"]["p50_ms"] - summary["curl"]["p50_ms"], 2),
    }
    print_table(
        f"new process per sample, {runs} samples each, interleaved",
        ["command", "p50 ms", "p90 ms", "p99 ms", "max ms", "cpu p50 ms", "target p50 ms"],
        [
            [label, summary[n]["p50_ms"], summary[n]["p90_ms"], summary[n]["p99_ms"],
             summary[n]["max_ms"], cpu_summary[n]["p50_ms"], target]
            for n, (label, target) in ROWS.items()
        ],
    )  # fmt: skip
    print(f"\nps --json minus curl, p50: {results['ps_minus_curl_p50_ms']} ms")
    print(f"results: {save_results('cli', results)}")
    return 0


def headlines(results: dict[str, Any]) -> Summary:
    """The common schema (bench/report.py): `--help` against a bare interpreter, `ps --json`
    against curl of the same API, in the same run."""
    ms = results["ms"]
    return Summary(
        headlines=[
            Headline(
                "gpucloud --help p50",
                ms["help"]["p50_ms"],
                "ms",
                better="lower",
                baseline=ms["python"]["p50_ms"],
                baseline_name="python -c pass",
                target=TARGET_HELP_MS,
            ),
            Headline(
                "gpucloud ps --json p50",
                ms["ps"]["p50_ms"],
                "ms",
                better="lower",
                baseline=ms["curl"]["p50_ms"],
                baseline_name="curl, same GET",
                target=TARGET_PS_MS,
            ),
        ],
        latencies={"gpucloud --help": ms["help"], "gpucloud ps --json": ms["ps"]},
    )
