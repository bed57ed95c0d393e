import json
import os
import sys
import time

import pytest

from node_agent.discovery import (
    InventoryError,
    SimulatedDiscovery,
    choose_discovery,
    parse_inventory,
    sku_of,
)
from node_agent.mig import MigError, SimulatedMig, Slice
from node_agent.mig import simulated_mig_uuid as mig_uuid
from node_agent.reconcile import Reconciler


class TestDiscovery:
    def test_inventory_spec(self):
        assert parse_inventory("h100-80gb:8, a100-40gb:2") == [("h100-80gb", 8), ("a100-40gb", 2)]
        for bad in ("v100:1", "h100-80gb:x", "h100-80gb:0"):
            with pytest.raises(InventoryError):
                parse_inventory(bad)

    def test_simulated_gpus_are_stable_per_node(self):
        a = SimulatedDiscovery("n1", "h200-141gb:2").discover()
        assert [g.index for g in a] == [0, 1] and {g.sku for g in a} == {"h200-141gb"}
        assert a == SimulatedDiscovery("n1", "h200-141gb:2").discover()
        assert a != SimulatedDiscovery("n2", "h200-141gb:2").discover()

    def test_declared_inventory_wins_over_nvml(self):
        d = choose_discovery("n1", {"GPUCLOUD_NODE_INVENTORY": "a100-80gb:1"})
        assert isinstance(d, SimulatedDiscovery) and d.spec == "a100-80gb:1"
        forced = choose_discovery("n1", {"GPUCLOUD_NODE_DISCOVERY": "simulated"})
        assert isinstance(forced, SimulatedDiscovery)

    def test_nvml_names_map_to_skus(self):
        gib = 2**30
        assert sku_of("NVIDIA H100 80GB HBM3", 80 * gib) == "h100-80gb"
        assert sku_of("NVIDIA H200", 141 * gib) == "h200-141gb"
        assert sku_of("NVIDIA A100-SXM4-40GB", 40 * gib) == "a100-40gb"
        assert sku_of("NVIDIA A100 80GB PCIe", 80 * gib) == "a100-80gb"
        assert sku_of("Tesla T4", 16 * gib) is None


class TestReconciler:
    def test_simulated_mig_handles_are_stable(self):
        handle = SimulatedMig().create(Slice("GPU-abc", 6, 19))
        assert handle == mig_uuid("GPU-abc", 6, 19) and handle.startswith("MIG-")
        assert handle != SimulatedMig().create(Slice("GPU-abc", 4, 19))
        with pytest.raises(MigError):
            SimulatedMig().create(Slice("GPU-abc", 0, 42))

    def test_starts_stops_and_survives_an_agent_restart(self, tmp_path, desired):
        out = tmp_path / "env.json"
        command = (
            f'{sys.executable} -c "import os, json, time; json.dump(dict(os.environ),'
            f" open('{out}', 'w')); time.sleep(600)\""
        )
        r = Reconciler(tmp_path / "state.json", command)
        assert r.reconcile([desired("a1", ("GPU-abc", 6, 19))])
        assert r.observed() == {"a1": "running"}
        deadline = time.time() + 10
        while (not out.exists() or not out.read_text()) and time.time() < deadline:
            time.sleep(0.05)
        env = json.loads(out.read_text())
        assert env["CUDA_VISIBLE_DEVICES"] == mig_uuid("GPU-abc", 6, 19)
        assert env["GPUCLOUD_ALLOCATION_ID"] == "a1"
        pid = r.workloads["a1"].pid

        restarted = Reconciler(tmp_path / "state.json", command)  # adopts, starts nothing
        assert restarted.observed() == {"a1": "running"}
        assert not restarted.reconcile([desired("a1", ("GPU-abc", 6, 19))])
        assert restarted.workloads["a1"].pid == pid

        assert restarted.reconcile([])
        assert restarted.observed() == {}
        # In this test the first reconciler is still the parent: reap the zombie (after a
        # real agent restart init does that).
        r.workloads["a1"].process.wait(timeout=5)
        with pytest.raises(OSError):
            os.kill(pid, 0)

    def test_a_dead_workload_is_started_again(self, tmp_path, desired):
        r = Reconciler(tmp_path / "s.json", f"{sys.executable} -c 'import time; time.sleep(600)'")
        r.reconcile([desired("a1", ("GPU-abc", 6, 19))])
        first = r.workloads["a1"]
        first.stop()
        assert r.observed() == {"a1": "failed"}
        assert r.reconcile([desired("a1", ("GPU-abc", 6, 19))])
        assert r.observed() == {"a1": "running"} and r.workloads["a1"].pid != first.pid
        r.reconcile([])
