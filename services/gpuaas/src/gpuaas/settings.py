"""gpuaas's own settings (GPUCLOUD_* environment), beside the kit's ServiceSettings."""

import datetime as dt
import os
from dataclasses import dataclass

from gpuaas.domain.quota import DEFAULT_PROJECT_QUOTA


@dataclass(frozen=True)
class GpuaasSettings:
    metering_period_s: float = 60.0
    node_heartbeat_timeout_s: float = 15.0
    sweep_interval_s: float = 1.0
    default_project_quota: int = DEFAULT_PROJECT_QUOTA
    provider: str = "static"
    provider_gpuaas_url: str = "http://127.0.0.1:8104"
    provider_inventory: str = "h100-80gb:8"
    provider_min_free_gpus: int = 8
    provider_max_nodes: int = 4
    provider_idle_retire_s: float = 300.0
    # A new allocation needs this many seconds of balance at its tenant's burn rate; 0: off.
    min_runway_s: int = 300
    # The hard stop (app/hard_stop.py): a tenant's live allocations are released once its
    # projected balance is this many seconds of its burn below zero.
    hard_stop_grace_s: float = 10.0
    # The longest a node's sync is held waiting for its desired state to change. Both ends of
    # a held sync are heartbeats, so it must stay well under the offline timeout.
    node_sync_hold_s: float = 5.0

    def __post_init__(self) -> None:
        if self.hard_stop_grace_s < 0:
            raise ValueError(
                f"GPUCLOUD_HARD_STOP_GRACE_S={self.hard_stop_grace_s} must be at least 0"
            )
        if not 0 <= self.node_sync_hold_s < self.node_heartbeat_timeout_s / 2:
            raise ValueError(
                f"GPUCLOUD_NODE_SYNC_HOLD_S={self.node_sync_hold_s} must be at least 0 and"
                " under half of GPUCLOUD_NODE_HEARTBEAT_TIMEOUT_S"
                f"={self.node_heartbeat_timeout_s}"
            )

    @property
    def metering_period(self) -> dt.timedelta:
        """The length of a closed usage interval (app/lifecycle.py carries it)."""
        return dt.timedelta(seconds=self.metering_period_s)

    @classmethod
    def from_env(cls) -> "GpuaasSettings":
        env = os.environ.get
        return cls(
            metering_period_s=float(env("GPUCLOUD_METERING_PERIOD_S", "60")),
            node_heartbeat_timeout_s=float(env("GPUCLOUD_NODE_HEARTBEAT_TIMEOUT_S", "15")),
            sweep_interval_s=float(env("GPUCLOUD_SWEEP_INTERVAL_S", "1")),
            default_project_quota=int(
                env("GPUCLOUD_DEFAULT_PROJECT_QUOTA", str(DEFAULT_PROJECT_QUOTA))
            ),
            provider=env("GPUCLOUD_PROVIDER", "static") or "static",
            provider_gpuaas_url=env("GPUCLOUD_PROVIDER_GPUAAS_URL", "")
            or f"http://127.0.0.1:{env('GPUCLOUD_HTTP_PORT', '8104')}",
            provider_inventory=env("GPUCLOUD_PROVIDER_INVENTORY", "h100-80gb:8") or "",
            provider_min_free_gpus=int(env("GPUCLOUD_PROVIDER_MIN_FREE_GPUS", "8") or 8),
            provider_max_nodes=int(env("GPUCLOUD_PROVIDER_MAX_NODES", "4") or 4),
            provider_idle_retire_s=float(env("GPUCLOUD_PROVIDER_IDLE_RETIRE_S", "300") or 300),
            min_runway_s=int(env("GPUCLOUD_MIN_RUNWAY_S", "300") or 0),
            hard_stop_grace_s=float(env("GPUCLOUD_HARD_STOP_GRACE_S", "10") or 0),
            node_sync_hold_s=float(env("GPUCLOUD_NODE_SYNC_HOLD_S", "5") or 0),
        )
