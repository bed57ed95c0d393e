"""What the SDK returns: one frozen dataclass per API object the CLI uses, each field
named as the API names it (times stay RFC 3339 strings, money integer micro-units, ids
strings). A field the API adds later is ignored until it is added here; a field the API
drops fails loudly (`ProtocolError`). `cli/tests/unit/test_contract.py` checks every
model against the committed OpenAPI documents, so the two cannot drift apart unseen.

`to_json()` is the object's stable JSON form: the CLI's `--json` documents are built from
it (docs/cli.md)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from gpucloud_cli.sdk.errors import ProtocolError

M = TypeVar("M", bound="Model")


@dataclasses.dataclass(frozen=True)
class Model:
    # field name -> Model class of its value (or of each item of its list)
    NESTED: ClassVar[dict[str, type[Model]]] = {}
    # the OpenAPI component this model mirrors: (document, schema name)
    API_SCHEMA: ClassVar[tuple[str, str] | None] = None

    @classmethod
    def from_api(cls: type[M], data: Any) -> M:
        if not isinstance(data, Mapping):
            raise ProtocolError(f"expected a {cls.__name__} object, got {type(data).__name__}")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ProtocolError(f"{cls.__name__} without {f.name!r}")
                continue
            value = data[f.name]
            nested = cls.NESTED.get(f.name)
            if nested is not None and value is not None:
                if isinstance(value, list):
                    value = [nested.from_api(item) for item in value]
                else:
                    value = nested.from_api(value)
            values[f.name] = value
        return cls(**values)

    @classmethod
    def many(cls: type[M], data: Any) -> list[M]:
        if not isinstance(data, list):
            raise ProtocolError(f"expected a list of {cls.__name__}, got {type(data).__name__}")
        return [cls.from_api(item) for item in data]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# iam


@dataclasses.dataclass(frozen=True)
class Token(Model):
    API_SCHEMA = ("iam", "TokenOut")
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str | None = None

    def __repr__(self) -> str:  # never render the secrets
        return f"Token(expires_in={self.expires_in})"


@dataclasses.dataclass(frozen=True)
class Me(Model):
    API_SCHEMA = ("iam", "MeOut")
    subject: str
    kind: str
    tenant_id: str | None
    roles: list[str]
    project_roles: dict[str, list[str]]
    amr: list[str]


@dataclasses.dataclass(frozen=True)
class Tenant(Model):
    API_SCHEMA = ("iam", "TenantOut")
    id: str
    name: str
    slug: str
    status: str
    created_at: str


@dataclasses.dataclass(frozen=True)
class Project(Model):
    API_SCHEMA = ("iam", "ProjectOut")
    id: str
    tenant_id: str
    name: str
    slug: str
    created_at: str


@dataclasses.dataclass(frozen=True)
class ServiceAccount(Model):
    API_SCHEMA = ("iam", "ServiceAccountOut")
    id: str
    tenant_id: str
    project_id: str
    name: str
    created_at: str


@dataclasses.dataclass(frozen=True)
class ApiKey(Model):
    API_SCHEMA = ("iam", "ApiKeyOut")
    id: str
    service_account_id: str
    prefix: str
    created_at: str
    expires_at: str
    revoked_at: str | None


@dataclasses.dataclass(frozen=True)
class IssuedApiKey(Model):
    """A new key and its secret, which iam shows this once."""

    API_SCHEMA = ("iam", "ApiKeyIssuedOut")
    NESTED = {"key": ApiKey}
    key: ApiKey
    api_key: str

    def __repr__(self) -> str:
        return f"IssuedApiKey(key={self.key!r})"


# gpuaas


@dataclasses.dataclass(frozen=True)
class Profile(Model):
    API_SCHEMA = ("gpuaas", "ProfileAvailability")
    name: str
    profile_id: int
    compute_slices: int
    memory_slices: int
    max_per_gpu: int
    valid_starts: list[int]
    price_key: str
    available: int


@dataclasses.dataclass(frozen=True)
class Sku(Model):
    API_SCHEMA = ("gpuaas", "SkuOut")
    NESTED = {"profiles": Profile}
    key: str
    name: str
    memory_gb: int
    mig_capable: bool
    price_key: str
    gpus_total: int
    gpus_free: int
    profiles: list[Profile]

    def profile(self, name: str) -> Profile | None:
        return next((p for p in self.profiles if p.name == name), None)


@dataclasses.dataclass(frozen=True)
class Instance(Model):
    API_SCHEMA = ("gpuaas", "InstanceOut")
    gpu_index: int
    device_uuid: str
    start: int
    memory_slices: int
    compute_slices: int
    profile_id: int | None = None


@dataclasses.dataclass(frozen=True)
class Allocation(Model):
    API_SCHEMA = ("gpuaas", "AllocationOut")
    NESTED = {"instances": Instance}
    id: str
    tenant_id: str
    project_id: str
    sku: str
    mig_profile: str | None
    count: int
    state: str
    price_key: str
    created_at: str
    updated_at: str
    instances: list[Instance]
    node_id: str | None = None
    reason: str | None = None
    running_since: str | None = None
    idle_stop_after_s: int | None = None
    last_active_at: str | None = None


# the allocation state machine (docs/state-machines.md), as far as a client needs it
FINAL_STATES = frozenset({"rejected", "released"})
RELEASABLE_STATES = frozenset({"scheduled", "provisioning", "running", "failed"})
LIVE_STATES = frozenset(
    {"requested", "scheduled", "provisioning", "running", "failed", "releasing", "release_failed"}
)


# billing


@dataclasses.dataclass(frozen=True)
class Price(Model):
    API_SCHEMA = ("billing", "PriceOut")
    id: str
    price_key: str
    currency: str
    micros_per_gpu_hour: int
    min_increment_s: int
    effective_from: str
    tenant_id: str | None = None


@dataclasses.dataclass(frozen=True)
class Grant(Model):
    API_SCHEMA = ("billing", "GrantOut")
    id: str
    granted_micros: int
    remaining_micros: int
    priority: int
    expires_at: str | None


@dataclasses.dataclass(frozen=True)
class Balance(Model):
    API_SCHEMA = ("billing", "BalanceOut")
    NESTED = {"grants": Grant}
    tenant_id: str
    currency: str
    available_micros: int
    wallet_micros: int
    standing: str
    low_threshold_micros: int
    ledger_sequence: int
    grants: list[Grant]


@dataclasses.dataclass(frozen=True)
class ProjectUsage(Model):
    API_SCHEMA = ("billing", "ProjectUsage")
    project_id: str | None
    price_key: str | None
    intervals: int
    gpu_seconds: int
    charged_micros: int
    reversed_micros: int
    net_micros: int


@dataclasses.dataclass(frozen=True)
class UsageReport(Model):
    API_SCHEMA = ("billing", "UsageReport")
    NESTED = {"items": ProjectUsage}
    tenant_id: str
    since: str
    until: str
    items: list[ProjectUsage]


@dataclasses.dataclass(frozen=True)
class Payment(Model):
    API_SCHEMA = ("billing", "PaymentOut")
    id: str
    tenant_id: str
    amount_micros: int
    currency: str
    provider: str
    status: str
    provider_ref: str | None = None
    failure_reason: str | None = None


PAYMENT_FINAL_STATES = frozenset({"settled", "failed", "refunded", "partially_refunded"})


@dataclasses.dataclass(frozen=True)
class StatementLine(Model):
    # billing documents no schema for the statement (its route answers `Any`): these two
    # mirror billing/app/statements.py
    kind: str
    price_key: str | None
    sku: str | None
    mig_profile: str | None
    project_id: str | None
    intervals: int
    gpu_seconds: int
    amount_micros: int


@dataclasses.dataclass(frozen=True)
class Statement(Model):
    NESTED = {"lines": StatementLine}
    tenant_id: str
    month: str
    currency: str
    period_start: str
    period_end: str
    opening_micros: int
    closing_micros: int
    usage_micros: int
    lines: list[StatementLine]
