"""Second factors: TOTP (RFC 6238) and single-use recovery codes, the tenant policy that
requires them for admins, and the step-up window. Pure: no I/O; the app layer stores the
secret (encrypted) and the code digests.

A TOTP code is accepted for the current 30 s step or one step either side (clock skew),
and only for a step later than the last one accepted for the user: a code seen once (by a
shoulder-surfer, a phishing proxy) cannot be replayed.
"""

import datetime as dt
import enum
import hmac
import re
import secrets

import pyotp

TOTP_DIGITS = 6
TOTP_PERIOD_S = 30
TOTP_ISSUER = "gpucloud"
RECOVERY_CODES = 10
# 16 base32 characters = 80 random bits: a plain digest is enough to store them.
RECOVERY_CODE_CHARS = 16
# Privileged iam operations need a second factor at most this old (RFC 9470 max_age).
STEP_UP_MAX_AGE_S = 600
# Roles the tenant's "require MFA for admins" policy covers (tenant-wide or in a project).
ADMIN_ROLES = frozenset({"owner", "admin"})
SECOND_FACTOR = "otp"

_SIX_DIGITS = re.compile(r"^\d{6}$")
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


class FactorStatus(enum.StrEnum):
    PENDING = "pending"  # enrolled, not yet proven with a code
    ACTIVE = "active"


def new_totp_secret() -> str:
    return pyotp.random_base32(length=32)  # 160 bits, RFC 4226's recommendation


def provisioning_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_S).provisioning_uri(
        name=account, issuer_name=TOTP_ISSUER
    )


def totp_step(at: dt.datetime) -> int:
    return int(at.timestamp()) // TOTP_PERIOD_S


def match_totp(secret: str, code: str, at: dt.datetime, last_step: int | None) -> int | None:
    """The time step `code` belongs to (within one step of `at`), or None. Steps at or
    before `last_step` are refused (replay)."""
    code = code.strip()
    if not _SIX_DIGITS.match(code):
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_S)
    now_step = totp_step(at)
    matched = None
    for step in (now_step - 1, now_step, now_step + 1):
        # Every candidate is compared (constant-time), whether or not one matched already.
        if hmac.compare_digest(totp.generate_otp(step), code):
            matched = step
    if matched is None or (last_step is not None and matched <= last_step):
        return None
    return matched


def looks_like_totp(code: str) -> bool:
    return bool(_SIX_DIGITS.match(code.strip()))


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """Codes as shown to the user: four groups of four base32 characters."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_BASE32) for _ in range(RECOVERY_CODE_CHARS))
        codes.append("-".join(raw[i : i + 4] for i in range(0, RECOVERY_CODE_CHARS, 4)))
    return codes


def normalize_recovery_code(code: str) -> str:
    """What is hashed: lower case without separators, so `ABCD-efgh ...` still matches."""
    return re.sub(r"[\s-]", "", code).lower()


def needs_mfa_enrollment(
    require_for_admins: bool,
    tenant_roles: frozenset[str],
    project_roles: frozenset[str],
    has_active_factor: bool,
) -> bool:
    """True when the tenant requires a second factor of this user and they have none."""
    if not require_for_admins or has_active_factor:
        return False
    return bool(ADMIN_ROLES & (tenant_roles | project_roles))
