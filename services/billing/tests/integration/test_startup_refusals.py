"""billing, started as a real process (`python -m billing`) on its migrated database,
refuses to serve until a payment provider is chosen, and takes the sandbox (top-ups settled
without money) only when GPUCLOUD_BILLING_SANDBOX_PAYMENTS=true says so."""

import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(billing_url: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GPUCLOUD_")}
    base.update(
        GPUCLOUD_DATABASE_URL=billing_url,
        GPUCLOUD_MIGRATE_ON_START="false",
        GPUCLOUD_HTTP_HOST="127.0.0.1",
        GPUCLOUD_HTTP_PORT=str(_free_port()),
        GPUCLOUD_OPERATOR_TOKEN="refusal-test",
        **env,
    )
    # a process that starts serving instead is killed by the timeout: the test fails
    return subprocess.run(
        [sys.executable, "-m", "billing"], env=base, capture_output=True, text=True, timeout=90
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "GPUCLOUD_BILLING_PAYMENT_PROVIDER is not set: choose stripe"),
        (
            {"GPUCLOUD_BILLING_PAYMENT_PROVIDER": "sandbox"},
            "set GPUCLOUD_BILLING_SANDBOX_PAYMENTS=true to mean it",
        ),
        (
            {"GPUCLOUD_BILLING_PAYMENT_PROVIDER": "stripe"},
            "GPUCLOUD_BILLING_STRIPE_WEBHOOK_SECRET are required",
        ),
    ],
)
def test_billing_refuses_to_start_without_a_chosen_provider(billing_url, env, message):
    result = _start(billing_url, **env)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr, (result.stdout + result.stderr)[-3000:]
