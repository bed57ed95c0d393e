"""The long-poll sync's pure parts: when an agent has work, and the hold's bounds."""

import pytest

from gpuaas.app.wakeups import differs
from gpuaas.settings import GpuaasSettings


def test_differs_when_the_agent_has_something_to_do():
    assert not differs(set(), {})
    assert not differs({"a"}, {"a": "running"})
    assert not differs({"a"}, {"a": "provisioning"})
    assert differs({"a"}, {})  # a new allocation to start
    assert differs(set(), {"a": "running"})  # one to tear down
    assert differs(set(), {"a": "failed"})  # a failed one to forget


def test_hold_must_stay_under_half_the_offline_timeout():
    assert GpuaasSettings().node_sync_hold_s < GpuaasSettings().node_heartbeat_timeout_s / 2
    GpuaasSettings(node_heartbeat_timeout_s=15, node_sync_hold_s=7.4)
    with pytest.raises(ValueError, match="GPUCLOUD_NODE_SYNC_HOLD_S"):
        GpuaasSettings(node_heartbeat_timeout_s=15, node_sync_hold_s=7.5)
    with pytest.raises(ValueError):
        GpuaasSettings(node_sync_hold_s=-1)
