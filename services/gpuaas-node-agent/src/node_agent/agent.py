"""The agent loop: register with gpuaas (bootstrap token -> node credential), then sync in a
long poll: report observed state (the heartbeat) and receive desired state, which gpuaas
holds back (up to its GPUCLOUD_NODE_SYNC_HOLD_S) until it differs from the report;
reconcile, and report again at once. GPUCLOUD_NODE_SYNC_INTERVAL_S is only a floor between
unchanged answers (a gpuaas that does not hold). The loop is the `node-sync` job of the
agent's service runtime, which restarts it (with backoff) after an error."""

import asyncio
import dataclasses
import datetime as dt
import logging
import os
from pathlib import Path

import httpx
import msgspec

from gpucloud_contracts.node_sync import (
    DesiredState,
    GpuIn,
    NodeRegister,
    NodeRegistered,
    NodeSync,
)
from node_agent.discovery import Discovery, Gpu, choose_discovery
from node_agent.mig import mig_driver_for
from node_agent.reconcile import DEFAULT_WORKLOAD, Reconciler

log = logging.getLogger(__name__)

SYNC_READ_TIMEOUT_S = 60.0
# After a failed sync session the next starts this soon, backing off to 10 s.
SESSION_RESTART_S, SESSION_MAX_BACKOFF_S = 1.0, 10.0


@dataclasses.dataclass(frozen=True)
class AgentSettings:
    node_name: str
    gpuaas_url: str
    bootstrap_token: str
    sync_interval_s: float = 0.2
    state_dir: Path = Path(".state/node-agent")
    workload_command: str = DEFAULT_WORKLOAD
    # Pulled bundles (an OCI image layout per manifest digest); None: bytes not verified.
    bundle_dir: Path | None = None
    agent_url: str | None = None
    provider: str = "static"

    @classmethod
    def from_env(cls) -> "AgentSettings":
        env = os.environ.get
        name = env("GPUCLOUD_NODE_NAME") or os.uname().nodename
        port = env("GPUCLOUD_HTTP_PORT")
        return cls(
            node_name=name,
            gpuaas_url=env("GPUCLOUD_GPUAAS_URL", "http://127.0.0.1:8104") or "",
            # The operator token doubles as the bootstrap token until iam issues node ones.
            bootstrap_token=env("GPUCLOUD_NODE_BOOTSTRAP_TOKEN")
            or env("GPUCLOUD_OPERATOR_TOKEN")
            or "",
            sync_interval_s=float(env("GPUCLOUD_NODE_SYNC_INTERVAL_S", "0.2") or 0.2),
            state_dir=Path(env("GPUCLOUD_NODE_STATE_DIR", ".state/node-agent") or "."),
            workload_command=env("GPUCLOUD_WORKLOAD_COMMAND") or DEFAULT_WORKLOAD,
            bundle_dir=Path(b) if (b := env("GPUCLOUD_NODE_BUNDLE_DIR")) else None,
            agent_url=f"http://{env('GPUCLOUD_HTTP_HOST', '127.0.0.1')}:{port}" if port else None,
            provider=env("GPUCLOUD_NODE_PROVIDER", "static") or "static",
        )


class NodeAgent:
    def __init__(self, settings: AgentSettings, discovery: Discovery | None = None) -> None:
        self.settings = settings
        self.discovery = discovery or choose_discovery(settings.node_name)
        self.gpus: list[Gpu] = []
        self.reconciler = Reconciler(
            settings.state_dir / f"{settings.node_name}.json",
            settings.workload_command,
            mig_driver_for(self.discovery),  # node-agent PTY/MIG work: NVML or simulated MIG
            bundle_dir=settings.bundle_dir,
        )
        self.node_id: str | None = None
        self._credential: str | None = None
        self.syncs = 0

    async def register(self, client: httpx.AsyncClient) -> None:
        self.gpus = self.discovery.discover()
        request = NodeRegister(
            name=self.settings.node_name,
            provider=self.settings.provider,  # type: ignore[arg-type]
            agent_url=self.settings.agent_url,
            gpus=[GpuIn(index=g.index, sku=g.sku, device_uuid=g.device_uuid) for g in self.gpus],
        )
        r = await client.post(
            "/v1/gpu/nodes/register",
            content=msgspec.json.encode(request),
            headers={
                "Authorization": f"Bearer {self.settings.bootstrap_token}",
                "Content-Type": "application/json",
            },
        )
        r.raise_for_status()
        registered = msgspec.json.decode(r.content, type=NodeRegistered)
        self.node_id, self._credential = str(registered.node_id), registered.credential
        log.info("registered", extra={"fields": {"node_id": self.node_id, "gpus": len(self.gpus)}})

    async def sync_once(self, client: httpx.AsyncClient, *, hold: bool = False) -> bool:
        """One sync; with `hold`, gpuaas may hold the answer until there is work."""
        if self.node_id is None:
            await self.register(client)
        activity = await asyncio.to_thread(self.reconciler.activity)
        await asyncio.to_thread(self.reconciler.trim_logs)
        readiness, reasons = self.reconciler.readiness()
        # Defaults are left out on the wire (an empty activity, no hold): gpuaas refuses
        # unknown fields, so an older gpuaas still takes what this agent sends.
        report = NodeSync(
            allocations=self.reconciler.observed(),  # type: ignore[arg-type]
            # While an app workload is starting or dead, report at the sync interval so its
            # readiness (and restart) shows at once; otherwise hold.
            hold=hold and self.reconciler.settled(),
            activity={k: dt.datetime.fromisoformat(v) for k, v in activity.items()},
            failures=self.reconciler.failures(),
            readiness=readiness,  # type: ignore[arg-type]
            readiness_reasons=reasons,
            ports=self.reconciler.ports(),
        )
        r = await client.post(
            f"/v1/gpu/nodes/{self.node_id}/sync",
            content=msgspec.json.encode(report),
            headers={
                "Authorization": f"Bearer {self._credential}",
                "Content-Type": "application/json",
            },
        )
        if r.status_code in (401, 404):
            self.node_id = None  # gpuaas forgot us or rotated the credential: register again
            return True
        r.raise_for_status()
        self.syncs += 1
        desired = msgspec.json.decode(r.content, type=DesiredState).allocations
        return await asyncio.to_thread(self.reconciler.reconcile, desired)

    async def run(self, _runtime: object = None) -> None:
        """One sync session: sync (long poll) until an error. A session that synced at least
        once ends quietly (the runtime starts the next one after SESSION_RESTART_S); one
        that could not sync at all raises, and the runtime backs off (to 10 s) before the
        next."""
        loop = asyncio.get_running_loop()
        # The read timeout outlasts any hold gpuaas may apply (under half its offline timeout).
        timeout = httpx.Timeout(10.0, read=SYNC_READ_TIMEOUT_S)
        synced = False
        async with httpx.AsyncClient(base_url=self.settings.gpuaas_url, timeout=timeout) as client:
            while True:
                started = loop.time()
                try:
                    changed = await self.sync_once(client, hold=True)
                except Exception as exc:
                    if not synced:
                        raise
                    log.warning("sync failed", extra={"fields": {"error": repr(exc)}})
                    return
                synced = True
                if changed:
                    continue
                # An unchanged answer came back: normally after a hold; a gpuaas that does
                # not hold must not make this loop spin.
                await asyncio.sleep(
                    max(0.0, self.settings.sync_interval_s - (loop.time() - started))
                )
