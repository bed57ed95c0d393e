"""What the SDK returns: one read-only record per API object the CLI uses, each field
named as the API names it (times stay RFC 3339 strings, money integer micro-units, ids
strings). A field the API adds later is ignored until it is added here; a field the API
drops fails loudly (`ProtocolError`). `cli/tests/unit/test_contract.py` checks every
model against the committed OpenAPI documents, so the two cannot drift apart unseen.

`to_json()` is the object's stable JSON form: the CLI's `--json` documents are built from
it (docs/cli.md)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from gpucloud_cli.sdk.errors import ProtocolError

M = TypeVar("M", bound="Model")
_UNSET: Any = object()


class Model:
    """A read-only record whose fields are its annotations; a class attribute of the same
    name is the field's default. Not a dataclass on purpose: generating 17 dataclasses
    cost more start-up than all of click (a command is a new process; `just bench cli`)."""

    # field name -> Model class of its value (or of each item of its list)
    NESTED: ClassVar[dict[str, type[Model]]] = {}
    # the OpenAPI component this model mirrors: (document, schema name)
    API_SCHEMA: ClassVar[tuple[str, str] | None] = None
    FIELDS: ClassVar[tuple[str, ...]] = ()
    REQUIRED: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = tuple(inspect.get_annotations(cls))  # this class's own, as written
        cls.FIELDS = cls.FIELDS + tuple(n for n in own if n not in cls.FIELDS)
        cls.REQUIRED = frozenset(n for n in cls.FIELDS if getattr(cls, n, _UNSET) is _UNSET)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(self.FIELDS):
            raise TypeError(f"{type(self).__name__} takes {len(self.FIELDS)} fields")
        values = dict(zip(self.FIELDS, args, strict=False))
        if unknown := set(kwargs) - set(self.FIELDS) or set(kwargs) & set(values):
            raise TypeError(f"{type(self).__name__}: unexpected or repeated {sorted(unknown)}")
        values |= kwargs
        if missing := self.REQUIRED - set(values):
            raise TypeError(f"{type(self).__name__} needs {sorted(missing)}")
        for name in self.FIELDS:
            object.__setattr__(self, name, values.get(name, getattr(type(self), name, None)))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.FIELDS)
        return f"{type(self).__name__}({shown})"

    @classmethod
    def from_api(cls: type[M], data: Any) -> M:
        if not isinstance(data, Mapping):
            raise ProtocolError(f"expected a {cls.__name__} object, got {type(data).__name__}")
        if missing := cls.REQUIRED - data.keys():
            raise ProtocolError(f"{cls.__name__} without {', '.join(sorted(missing))}")
        values: dict[str, Any] = {}
        for name in cls.FIELDS:
            if name not in data:
                continue
            value = data[name]
            nested = cls.NESTED.get(name)
            if nested is not None and value is not None:
                if isinstance(value, list):
                    value = [nested.from_api(item) for item in value]
                else:
                    value = nested.from_api(value)
            values[name] = value
        return cls(**values)

    @classmethod
    def many(cls: type[M], data: Any) -> list[M]:
        if not isinstance(data, list):
            raise ProtocolError(f"expected a list of {cls.__name__}, got {type(data).__name__}")
        return [cls.from_api(item) for item in data]

    def to_json(self) -> dict[str, Any]:
        return {n: _plain(getattr(self, n)) for n in self.FIELDS}


def _plain(value: Any) -> Any:
    if isinstance(value, Model):
        return value.to_json()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# iam


class Token(Model):
    API_SCHEMA = ("iam", "TokenOut")
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str | None = None

    def __repr__(self) -> str:  # never render the secrets
        return f"Token(expires_in={self.expires_in})"


class Me(Model):
    API_SCHEMA = ("iam", "MeOut")
    subject: str
    kind: str
    tenant_id: str | None
    roles: list[str]
    project_roles: dict[str, list[str]]
    amr: list[str]


class Tenant(Model):
    API_SCHEMA = ("iam", "TenantOut")
    id: str
    name: str
    slug: str
    status: str
    created_at: str


class Project(Model):
    API_SCHEMA = ("iam", "ProjectOut")
    id: str
    tenant_id: str
    name: str
    slug: str
    created_at: str


class ServiceAccount(Model):
    API_SCHEMA = ("iam", "ServiceAccountOut")
    id: str
    tenant_id: str
    project_id: str
    name: str
    created_at: str


class ApiKey(Model):
    API_SCHEMA = ("iam", "ApiKeyOut")
    id: str
    service_account_id: str
    prefix: str
    created_at: str
    expires_at: str
    revoked_at: str | None


class IssuedApiKey(Model):
    """A new key and its secret, which iam shows this once."""

    API_SCHEMA = ("iam", "ApiKeyIssuedOut")
    NESTED = {"key": ApiKey}
    key: ApiKey
    api_key: str

    def __repr__(self) -> str:
        return f"IssuedApiKey(key={self.key!r})"


# gpuaas


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


class Instance(Model):
    API_SCHEMA = ("gpuaas", "InstanceOut")
    gpu_index: int
    device_uuid: str
    start: int
    memory_slices: int
    compute_slices: int
    profile_id: int | None = None


class LaunchedBundle(Model):
    """The signed, promoted bundle an allocation runs (gpuaas's launch gate passed it)."""

    API_SCHEMA = ("gpuaas", "BundleOut")
    tenant_id: str
    app: str
    version: str
    digest: str
    channel: str
    # registry yanked the release since the launch; the allocation runs until released
    yanked: bool = False
    # why a launch of this release would be refused now (yanked, revoked, ...); None: it
    # would pass
    refusal: str | None = None


class Allocation(Model):
    API_SCHEMA = ("gpuaas", "AllocationOut")
    NESTED = {"instances": Instance, "bundle": LaunchedBundle}
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
    bundle: LaunchedBundle | None = None
    # set when the allocation runs an app replica (appplatform's controller asked for it)
    replica_id: str | None = None
    instance_id: str | None = None
    readiness: str | None = None
    readiness_reason: str | None = None


# the allocation state machine (docs/state-machines.md), as far as a client needs it
FINAL_STATES = frozenset({"rejected", "released"})
RELEASABLE_STATES = frozenset({"scheduled", "provisioning", "running", "failed"})
LIVE_STATES = frozenset(
    {"requested", "scheduled", "provisioning", "running", "failed", "releasing", "release_failed"}
)


# billing


class Price(Model):
    API_SCHEMA = ("billing", "PriceOut")
    id: str
    price_key: str
    currency: str
    micros_per_gpu_hour: int
    min_increment_s: int
    effective_from: str
    tenant_id: str | None = None


class Grant(Model):
    API_SCHEMA = ("billing", "GrantOut")
    id: str
    granted_micros: int
    remaining_micros: int
    priority: int
    expires_at: str | None


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


class ProjectUsage(Model):
    API_SCHEMA = ("billing", "ProjectUsage")
    project_id: str | None
    price_key: str | None
    intervals: int
    gpu_seconds: int
    charged_micros: int
    reversed_micros: int
    net_micros: int


class UsageReport(Model):
    API_SCHEMA = ("billing", "UsageReport")
    NESTED = {"items": ProjectUsage}
    tenant_id: str
    since: str
    until: str
    items: list[ProjectUsage]


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


# iam: the caller's SSH keys


class SshKey(Model):
    API_SCHEMA = ("iam", "SshKeyOut")
    id: str
    name: str
    algorithm: str
    bits: int
    fingerprint: str
    public_key: str
    created_at: str
    revoked_at: str | None = None


# terminal-gateway


class TerminalSession(Model):
    """A terminal session: who, on which allocation, in which state, how it ended."""

    API_SCHEMA = ("terminal-gateway", "SessionOut")
    id: str
    tenant_id: str
    project_id: str
    allocation_id: str
    node_id: str
    user_id: str
    via: str
    kind: str
    state: str
    attachments: int
    minted_at: str
    reason: str | None = None
    client_address: str | None = None
    opened_at: str | None = None
    detached_at: str | None = None
    ended_at: str | None = None
    recording_bytes: int | None = None
    recording_digest: str | None = None


TERMINAL_FINAL_STATES = frozenset({"closed", "expired", "revoked"})


class TerminalConnect(Model):
    """A session and its single-use connect token (at most 60 s)."""

    API_SCHEMA = ("terminal-gateway", "SessionToken")
    NESTED = {"session": TerminalSession}
    session: TerminalSession
    token: str
    connect_url: str
    expires_at: str

    def __repr__(self) -> str:  # never render the token
        return f"TerminalConnect(session={self.session.id!r}, expires_at={self.expires_at!r})"


class SshEndpoint(Model):
    """Where `ssh` reaches the platform, and the host key it presents."""

    API_SCHEMA = ("terminal-gateway", "SshEndpoint")
    host: str
    port: int
    host_keys: list[str]
    known_hosts: list[str]
    user: str = "<allocation id>"
