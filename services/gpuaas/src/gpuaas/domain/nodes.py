"""The node lifecycle, enforced here:

    registering -> ready -> cordoned | draining | offline | retired
    cordoned -> ready | draining | offline | retired
    draining -> ready | cordoned | offline | retired
    offline -> ready (heartbeats again) | retired

Only `ready` nodes take new allocations. `draining` releases the node's allocations;
`offline` (missed heartbeats) sends them down the failure path.
"""

import enum


class NodeState(enum.StrEnum):
    REGISTERING = "registering"
    READY = "ready"
    CORDONED = "cordoned"
    DRAINING = "draining"
    OFFLINE = "offline"
    RETIRED = "retired"


N = NodeState
NODE_TRANSITIONS: dict[NodeState, frozenset[NodeState]] = {
    N.REGISTERING: frozenset({N.READY, N.OFFLINE, N.RETIRED}),
    N.READY: frozenset({N.CORDONED, N.DRAINING, N.OFFLINE, N.RETIRED}),
    N.CORDONED: frozenset({N.READY, N.DRAINING, N.OFFLINE, N.RETIRED}),
    N.DRAINING: frozenset({N.READY, N.CORDONED, N.OFFLINE, N.RETIRED}),
    N.OFFLINE: frozenset({N.READY, N.RETIRED}),
    N.RETIRED: frozenset(),
}


class NodeEvent(enum.StrEnum):
    REGISTERED = "gpuaas.node.registered"
    READY = "gpuaas.node.ready"
    CORDONED = "gpuaas.node.cordoned"
    DRAINING = "gpuaas.node.draining"
    OFFLINE = "gpuaas.node.offline"
    RETIRED = "gpuaas.node.retired"


class IllegalNodeTransition(Exception):
    def __init__(self, current: NodeState, target: NodeState) -> None:
        super().__init__(f"a node cannot go from {current} to {target}")
        self.current, self.target = current, target


def node_transition(current: NodeState, target: NodeState) -> NodeEvent:
    if target not in NODE_TRANSITIONS[current]:
        raise IllegalNodeTransition(current, target)
    return NodeEvent[target.name]
