"""A short chaos run in CI (issue 7): `python -m chaos --seed 20 --cycles 20` on its own
isolated stack (its own home and ports + 1000 or the next free offset, never the shared
fleet's), with tenants on the
launch journey while faults are injected; the audit afterwards must find 0 violations.

It runs as a child process: devstack's fleet is cached per process, and this pytest process
keeps talking to the shared fleet. Longer runs: `just chaos --seed 1 --cycles 100`.
"""

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

SEED, CYCLES = 20, 20


@pytest.mark.timeout(600)
def test_short_chaos_run_finds_no_violation() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GPUCLOUD_DEVSTACK_HOME", "GPUCLOUD_STATE_DIR", "GPUCLOUD_FAULTS")
    }
    result = subprocess.run(
        [
            *(sys.executable, "-m", "chaos", "--seed", str(SEED), "--cycles", str(CYCLES)),
            *("--port-offset", "auto"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=580,
    )
    out = result.stdout + result.stderr
    print(out[-6000:])
    assert result.returncode == 0, out[-6000:]
    assert re.search(r"^violations:\s+0$", out, re.M), out[-3000:]
    # The run did real work: faults went in and usage was rated through them.
    faults = re.search(r"^faults:\s+(.*)$", out, re.M)
    assert faults and sum(int(n) for n in re.findall(r"\d+", faults.group(1))) == CYCLES
    rated = re.search(r"usage intervals rated (\d+)", out)
    assert rated and int(rated.group(1)) > 0, out[-3000:]
