"""A stand-in terminal-gateway signer: a locally generated Ed25519 key, its JWKS, and
session tokens minted with it (valid ones, and each way of getting one wrong); desired
allocations as gpuaas sends them."""

import json
import time
import uuid
from typing import Any

import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from gpucloud_contracts.node_sync import DesiredAllocation, InstanceOut, WorkloadRuntime
from node_agent.session_tokens import RELAY_TOKEN_TYPE, SESSION_TOKEN_TYPE


class SessionSigner:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.kid = uuid.uuid4().hex

    def jwks(self) -> dict[str, Any]:
        public = json.loads(OKPAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "alg": "EdDSA", "use": "sig"}]}

    def claims(self, node: str, allocation: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": "terminal-gateway",
            "aud": f"node:{node}",
            "sub": str(uuid.uuid4()),
            "tenant": str(uuid.uuid4()),
            "allocation_id": allocation,
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self, node: str, allocation: str, *, typ: str = SESSION_TOKEN_TYPE, **overrides: Any
    ) -> str:
        return jwt.encode(
            self.claims(node, allocation, **overrides),
            self.key,
            algorithm="EdDSA",
            headers={"kid": self.kid, "typ": typ},
        )

    def relay(self, node: str, session_token: str, **overrides: Any) -> str:
        """terminal-gateway's relay assertion for `session_token`."""
        bound = jwt.decode(session_token, options={"verify_signature": False})["jti"]
        now = int(time.time())
        claims = {
            "iss": "terminal-gateway",
            "aud": f"node:{node}",
            "sub": "relay",
            "session_jti": bound,
            "iat": now,
            "exp": now + 30,
            "jti": str(uuid.uuid4()),
        }
        claims.update(overrides)
        return jwt.encode(
            claims, self.key, algorithm="EdDSA", headers={"kid": self.kid, "typ": RELAY_TOKEN_TYPE}
        )

    def headers(self, node: str, allocation: str, **overrides: Any) -> dict[str, str]:
        """Authorization and relay assertion, as terminal-gateway's relay sends them."""
        token = self.token(node, allocation, **overrides)
        return {"Authorization": f"Bearer {token}", "X-Terminal-Relay": self.relay(node, token)}


@pytest.fixture
def signer() -> SessionSigner:
    return SessionSigner()


@pytest.fixture
def stranger() -> SessionSigner:
    """A signer whose key terminal-gateway never published."""
    return SessionSigner()


@pytest.fixture
def desired():
    """A desired allocation as gpuaas's sync answers it; each instance is (device uuid, start,
    MIG profile id or None for a whole GPU)."""

    def make(allocation_id: str, *instances: tuple[str, int, int | None]) -> DesiredAllocation:
        return DesiredAllocation(
            id=allocation_id,  # type: ignore[arg-type]
            sku="h100-80gb",
            mig_profile=None,
            state="scheduled",
            instances=[
                InstanceOut(
                    gpu_index=0,
                    device_uuid=device,
                    start=start,
                    memory_slices=1,
                    compute_slices=1,
                    profile_id=profile_id,
                )
                for device, start, profile_id in instances
            ],
        )

    return make


def signed_config(runtime: WorkloadRuntime) -> dict:
    """The app manifest a publisher signs for `runtime` (the bundle's config blob): the agent
    runs a runtime only when it matches the signed one (node_agent.bundles.check_runtime)."""
    config: dict = {
        "schema_version": 1, "name": "web", "version": "1.0.0", "command": list(runtime.command),
        "resources": {"sku": "h100-80gb"},
        "ports": [msgspec.to_builtins(p) for p in runtime.ports],
        "env": {name: {"value": value} for name, value in (runtime.env or {}).items()},
    }  # fmt: skip
    if runtime.probe is not None:
        config["probe"] = {"path": runtime.probe.path, "port": runtime.probe.port}
    return config


async def fund_tenant(uow: Any, tenant_id: uuid.UUID) -> None:
    """What billing tells gpuaas about a tenant (its consumers' handlers, in the caller's
    transaction): a balance standing and the list prices. gpuaas's money gate fails closed
    without both."""
    import datetime as dt

    from gpuaas.app.balance import balance_handler
    from gpuaas.app.prices import price_handler
    from gpuaas.settings import GpuaasSettings
    from gpucloud_contracts.events.billing import BalanceChanged, PriceChanged
    from gpucloud_contracts.gpus import list_price_book
    from platformkit.envelope import new_event

    now = dt.datetime.now(dt.UTC)
    balance = BalanceChanged(
        tenant_id=tenant_id, currency="USD", available_micros=10**12, standing="ok",
        ledger_sequence=1, as_of=now,
    )  # fmt: skip
    funded = new_event(
        type="billing.balance.changed", source="billing", subject=str(tenant_id), payload=balance
    )
    await balance_handler(GpuaasSettings())(funded, uow)
    for version, (key, micros) in enumerate(sorted(list_price_book().items()), 1):
        price = PriceChanged(
            price_id=uuid.uuid4(), price_key=key, tenant_id=None, currency="USD",
            micros_per_hour=micros, min_increment_s=1,
            effective_from=now - dt.timedelta(days=1), version=version,
        )  # fmt: skip
        priced = new_event(
            type="billing.price.changed", source="billing", subject=key, payload=price
        )
        await price_handler()(priced, uow)
