import re
from pathlib import Path

import pytest

from gpucloud_cli.exit_codes import CLASS_CODES, ExitCode, exit_code, problem_class

DOC = Path(__file__).resolve().parents[3] / "docs" / "cli.md"


@pytest.mark.parametrize(
    ("status", "problem_type", "expected"),
    [
        (401, None, "auth"),
        (403, "https://gpucloud.dev/problems/forbidden", "auth"),
        (404, None, "not_found"),
        (400, "https://gpucloud.dev/problems/validation", "validation"),
        (422, "https://gpucloud.dev/problems/idempotency-key-reused", "validation"),
        (409, "https://gpucloud.dev/problems/no-capacity", "conflict"),
        (402, "https://gpucloud.dev/problems/balance-exhausted", "payment_required"),
        (429, None, "throttled"),
        (500, None, "server"),
        (503, "https://gpucloud.dev/problems/unavailable", "server"),
        # iam's token endpoint: RFC 6749 says 400, but it is a sign-in failure
        (400, "https://gpucloud.dev/problems/invalid-grant", "auth"),
        (400, "https://gpucloud.dev/problems/mfa-required", "auth"),
        (401, "https://gpucloud.dev/problems/invalid-client", "auth"),
        (418, None, "error"),
    ],
)
def test_problem_class(status: int, problem_type: str | None, expected: str) -> None:
    assert problem_class(status, problem_type) == expected


def test_every_class_has_its_own_code() -> None:
    codes = list(CLASS_CODES.values())
    assert len(set(codes)) == len(codes) == len(ExitCode) - 1  # OK has no class
    assert exit_code("no such class") == ExitCode.ERROR


def test_the_documented_table_is_the_code() -> None:
    """docs/cli.md's exit-code table lists exactly these codes and classes."""
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \|", DOC.read_text(), flags=re.MULTILINE)
    documented = {int(code): name for code, name in rows}
    assert documented == {int(c): name for name, c in CLASS_CODES.items()} | {0: "ok"}
