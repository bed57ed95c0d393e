"""Pure MFA rules: the TOTP window and replay refusal, recovery codes, the admin policy,
and the box that seals TOTP secrets at rest."""

import datetime as dt
import uuid

import pyotp
import pytest
from cryptography.exceptions import InvalidTag

from iam.app.secrets import SecretBox
from iam.domain import mfa

AT = dt.datetime(2025, 1, 1, 12, 0, 10, tzinfo=dt.UTC)


def _code(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).generate_otp(step)


def test_totp_accepts_one_step_of_skew_and_no_more():
    secret = mfa.new_totp_secret()
    step = mfa.totp_step(AT)
    for offset in (-1, 0, 1):
        assert mfa.match_totp(secret, _code(secret, step + offset), AT, None) == step + offset
    for offset in (-2, 2):
        assert mfa.match_totp(secret, _code(secret, step + offset), AT, None) is None


def test_totp_refuses_a_step_already_used():
    secret = mfa.new_totp_secret()
    step = mfa.totp_step(AT)
    assert mfa.match_totp(secret, _code(secret, step), AT, last_step=step) is None
    assert mfa.match_totp(secret, _code(secret, step), AT, last_step=step - 1) == step


def test_totp_refuses_malformed_codes():
    secret = mfa.new_totp_secret()
    assert mfa.match_totp(secret, "12345", AT, None) is None
    assert mfa.match_totp(secret, "abcdef", AT, None) is None


def test_recovery_codes_are_distinct_and_normalize():
    codes = mfa.new_recovery_codes()
    assert len(set(codes)) == mfa.RECOVERY_CODES
    code = codes[0]
    assert len(code.replace("-", "")) == 16 and not mfa.looks_like_totp(code)
    assert mfa.normalize_recovery_code(code.upper().replace("-", " ")) == code.replace("-", "")


@pytest.mark.parametrize(
    ("required", "tenant", "project", "has_factor", "expected"),
    [
        (True, {"owner"}, set(), False, True),
        (True, {"admin"}, set(), False, True),
        (True, {"viewer"}, {"admin"}, False, True),
        (True, {"member"}, {"viewer"}, False, False),
        (True, {"owner"}, set(), True, False),
        (False, {"owner"}, set(), False, False),
    ],
)
def test_the_policy_covers_admins_without_a_factor(required, tenant, project, has_factor, expected):
    assert (
        mfa.needs_mfa_enrollment(required, frozenset(tenant), frozenset(project), has_factor)
        is expected
    )


def test_the_secret_box_seals_and_binds_to_its_row():
    box = SecretBox("a passphrase for tests")
    user, other = uuid.uuid4(), uuid.uuid4()
    sealed = box.seal(b"JBSWY3DPEHPK3PXP", user.bytes)
    assert b"JBSWY3DPEHPK3PXP" not in sealed
    assert box.open(sealed, True, user.bytes) == b"JBSWY3DPEHPK3PXP"
    with pytest.raises(InvalidTag):
        box.open(sealed, True, other.bytes)
    with pytest.raises(InvalidTag):
        SecretBox("another passphrase").open(sealed, True, user.bytes)
    assert SecretBox(None).seal(b"x", user.bytes) == b"x" and not SecretBox(None).encrypts
