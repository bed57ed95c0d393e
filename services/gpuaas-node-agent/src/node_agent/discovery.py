"""GPU discovery: NVML (nvidia-ml-py) when a driver answers, a declared simulated inventory
otherwise. Both return the same `Gpu` records, so everything above this layer is one code
path.

Simulated inventory: GPUCLOUD_NODE_INVENTORY="h100-80gb:8" (comma-separated `sku:count`).
Device UUIDs are derived from the node name, so a restarted agent reports the same GPUs.
"""

import dataclasses
import logging
import os
import uuid
from typing import Protocol

from gpucloud_contracts.gpus import SKUS

log = logging.getLogger(__name__)
DEFAULT_INVENTORY = "h100-80gb:8"
KNOWN_SKUS = tuple(SKUS)  # the platform's GPU catalog (libs/contracts)
_UUID_NAMESPACE = uuid.UUID("0b8f3f0e-3d8c-4a57-9f0d-8a0c7f1f2b6e")


@dataclasses.dataclass(frozen=True)
class Gpu:
    index: int
    sku: str
    device_uuid: str


class Discovery(Protocol):
    def discover(self) -> list[Gpu]: ...


class InventoryError(ValueError):
    pass


def parse_inventory(spec: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        sku, _, count = part.partition(":")
        if sku not in KNOWN_SKUS:
            raise InventoryError(f"unknown SKU {sku!r} in inventory; one of {KNOWN_SKUS}")
        try:
            n = int(count or "1")
        except ValueError:
            raise InventoryError(f"bad GPU count in {part!r}") from None
        if not 1 <= n <= 16:
            raise InventoryError(f"GPU count must be 1..16 in {part!r}")
        out.append((sku, n))
    return out


@dataclasses.dataclass(frozen=True)
class SimulatedDiscovery:
    node_name: str
    spec: str = DEFAULT_INVENTORY

    def discover(self) -> list[Gpu]:
        gpus: list[Gpu] = []
        for sku, count in parse_inventory(self.spec):
            for _ in range(count):
                index = len(gpus)
                stable = uuid.uuid5(_UUID_NAMESPACE, f"{self.node_name}/{index}")
                gpus.append(Gpu(index, sku, f"GPU-{stable}"))
        return gpus


def sku_of(device_name: str, memory_bytes: int) -> str | None:
    """Map an NVML device name and memory size to a catalog SKU (None: not offered)."""
    name = device_name.upper()
    gib = memory_bytes / 2**30
    if "H200" in name:
        return "h200-141gb"
    if "H100" in name:
        return "h100-80gb"
    if "A100" in name:
        return "a100-80gb" if gib > 60 else "a100-40gb"
    return None


class NvmlDiscovery:
    """Real GPUs through NVML. Read-only: it never changes MIG mode or instances."""

    def discover(self) -> list[Gpu]:
        import pynvml  # nvidia-ml-py; imported here so nodes without a driver never need it

        pynvml.nvmlInit()
        try:
            gpus = []
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                name = pynvml.nvmlDeviceGetName(handle)
                name = name.decode() if isinstance(name, bytes) else name
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total
                device_uuid = pynvml.nvmlDeviceGetUUID(handle)
                device_uuid = (
                    device_uuid.decode() if isinstance(device_uuid, bytes) else device_uuid
                )
                sku = sku_of(name, memory)
                if sku is None:
                    log.warning("GPU model not in the catalog", extra={"fields": {"name": name}})
                    continue
                gpus.append(Gpu(index, sku, device_uuid))
            return gpus
        finally:
            pynvml.nvmlShutdown()


def nvml_available() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:
        return False


def choose_discovery(node_name: str, env: dict[str, str] | None = None) -> Discovery:
    """Declared inventory wins (a simulated node); else NVML when a driver answers; else the
    default simulated inventory."""
    env = dict(os.environ) if env is None else env
    spec = env.get("GPUCLOUD_NODE_INVENTORY")
    if spec:
        return SimulatedDiscovery(node_name, spec)
    if env.get("GPUCLOUD_NODE_DISCOVERY", "auto") != "simulated" and nvml_available():
        return NvmlDiscovery()
    return SimulatedDiscovery(node_name)
