"""Check the agent's NVML layer on a real GPU machine.

    uv run python services/gpuaas-node-agent/scripts/nvml_check.py          # discovery only
    uv run python services/gpuaas-node-agent/scripts/nvml_check.py --mig    # + one 1g instance

Prints what discovery finds and the MIG instances that exist. With --mig (root, and a GPU
with MIG mode already enabled: `nvidia-smi -i 0 -mig 1`), it creates one 1g instance
(profile id 19) at the first free start on the first MIG-enabled GPU through the agent's
own driver, prints its MIG device UUID, destroys it, and checks that it is gone.
"""

import argparse
import sys

import pynvml

from node_agent.discovery import NvmlDiscovery, nvml_available
from node_agent.mig import MigError, NvmlMig, Slice


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mig", action="store_true", help="create and destroy one 1g instance")
    args = parser.parse_args()
    if not nvml_available():
        print("NVML: not available (no driver); the agent would use a simulated inventory")
        return 1
    gpus = NvmlDiscovery().discover()
    print(f"NVML: {len(gpus)} catalog GPU(s)")
    for gpu in gpus:
        print(f"  {gpu.index}: {gpu.sku} {gpu.device_uuid}")
    driver = NvmlMig()
    try:
        existing = driver.existing()
    except MigError as exc:
        print(f"MIG instances: cannot list ({exc})")
        existing = []
    print(f"MIG instances: {len(existing)}")
    for instance in existing:
        s = instance.slice
        print(f"  {s.gpu_uuid} start {s.start} profile {s.profile_id}: {instance.mig_uuid}")
    if not args.mig:
        return 0
    pynvml.nvmlInit()
    enabled = [
        g
        for g in gpus
        if pynvml.nvmlDeviceGetMigMode(pynvml.nvmlDeviceGetHandleByUUID(g.device_uuid))[0]
        == pynvml.NVML_DEVICE_MIG_ENABLE
    ]
    if not enabled:
        print("--mig: no GPU has MIG mode enabled (nvidia-smi -i <n> -mig 1, then reset)")
        return 1
    gpu = enabled[0]
    taken = {i.slice.start for i in existing if i.slice.gpu_uuid == gpu.device_uuid}
    for start in range(7):
        if start in taken:
            continue
        s = Slice(gpu.device_uuid, start, 19)
        try:
            handle = driver.create(s)
        except MigError as exc:
            print(f"create at start {start}: {exc}")
            continue
        print(f"created 1g at start {start} on GPU {gpu.index}: {handle}")
        driver.destroy(s)
        gone = all(i.slice != s for i in driver.existing())
        print(f"destroyed: {'yes' if gone else 'NO, still listed'}")
        return 0 if gone else 1
    print("--mig: no free start for a 1g instance")
    return 1


if __name__ == "__main__":
    sys.exit(main())
