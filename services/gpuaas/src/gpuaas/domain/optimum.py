"""The exact packer that the placement policy is measured against (tests, bench).

A request sequence arrives on a small fleet and nothing is released. The policy places
requests one by one, online, until its first refusal (`policy_prefix`). The optimum is the
longest prefix of the same sequence that fits on the fleet at once, every placement allowed
and the whole sequence known in advance (`longest_prefix`): an exhaustive search over
(GPU, start) choices, so only for a few GPUs. policy / optimum is the packing quality; 1.0
means the policy never refused a request that some packing could still have taken.

Whether instances fit one GPU together depends only on which profiles they are (some
choice of starts holds them all), not on the order they came in, so the search tracks
each GPU's multiset of profiles and never branches on starts. States are canonical (GPUs
of a node and nodes of equal shape are interchangeable: sorted tuples), every expanded
state is remembered, the search starts from the policy's result as the best known and prunes a
branch when the free compute left cannot hold enough of the next requests to beat it.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from gpuaas.domain.catalog import COMPUTE_SLICES, MEMORY_SLICES, SHAPES
from gpuaas.domain.geometry import Instance, Layout, can_place_profile, instance_of
from gpuaas.domain.placement import GpuState, NodeCapacity, place


@dataclass(frozen=True, slots=True)
class Request:
    """`profile_id` None: `count` whole GPUs on one node; else `count` MIG slices on one node."""

    profile_id: int | None
    count: int = 1

    @property
    def compute(self) -> int:
        per = COMPUTE_SLICES if self.profile_id is None else SHAPES[self.profile_id].compute
        return per * self.count

    @property
    def memory(self) -> int:
        per = MEMORY_SLICES if self.profile_id is None else SHAPES[self.profile_id].memory
        return per * self.count


def policy_prefix(gpus_per_node: Sequence[int], requests: Sequence[Request]) -> int:
    """How many requests `placement.place` takes, in order, before its first refusal."""
    ids = [[uuid.UUID(int=(n << 16) + i) for i in range(k)] for n, k in enumerate(gpus_per_node)]
    nodes = [uuid.UUID(int=n << 64) for n in range(len(gpus_per_node))]
    layouts = {g: Layout() for gs in ids for g in gs}
    for taken, r in enumerate(requests):
        snapshot = [
            NodeCapacity(node, tuple(GpuState(g, i, layouts[g]) for i, g in enumerate(gs)))
            for node, gs in zip(nodes, ids, strict=True)
        ]
        decision = place(snapshot, None if r.profile_id is None else SHAPES[r.profile_id], r.count)
        if decision is None:
            return taken
        for b in decision.bookings:
            layouts[b.gpu_id] = layouts[b.gpu_id].add(b.instance)
    return len(requests)


class _Contents:
    """What a GPU holds, as the sorted profile ids on it (`WHOLE` for a whole GPU), interned
    as small ints. Whether a multiset of instances fits one GPU does not depend on the
    order they were placed in, only on whether some choice of starts holds them all, so
    the search never branches on starts."""

    WHOLE = -1

    def __init__(self) -> None:
        self.ids: dict[tuple[int, ...], int] = {}
        self.contents: list[tuple[int, ...]] = []
        self.free: list[int] = []  # compute slices
        self.free_memory: list[int] = []
        self._added: dict[tuple[int, int], int | None] = {}
        self.empty = self.id(())
        self.whole = self.id((self.WHOLE,))

    def id(self, profiles: tuple[int, ...]) -> int:
        found = self.ids.get(profiles)
        if found is None:
            found = self.ids[profiles] = len(self.contents)
            self.contents.append(profiles)
            whole = self.WHOLE in profiles
            self.free.append(0 if whole else COMPUTE_SLICES - sum(SHAPES[p].compute for p in profiles))
            self.free_memory.append(
                0 if whole else MEMORY_SLICES - sum(SHAPES[p].memory for p in profiles)
            )
        return found

    def add(self, content: int, profile_id: int) -> int | None:
        """The content with one more instance of the profile, or None where no starts fit."""
        key = (content, profile_id)
        if key not in self._added:
            profiles = tuple(sorted((*self.contents[content], profile_id)))
            fits = self.WHOLE not in profiles and _realizable((), _largest_first(profiles))
            self._added[key] = self.id(profiles) if fits else None
        return self._added[key]


def _largest_first(profiles: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(sorted(profiles, key=lambda p: (-SHAPES[p].memory, p)))


def _realizable(placed: tuple[Instance, ...], rest: tuple[int, ...]) -> bool:
    """Whether the profiles in `rest` can all be added to `placed`, some start each."""
    if not rest:
        return True
    profile_id, tail = rest[0], rest[1:]
    shape = SHAPES[profile_id]
    return any(
        can_place_profile(placed, profile_id, start)
        and _realizable(tuple(sorted((*placed, instance_of(shape, start)))), tail)
        for start in shape.starts
    )


_Node = tuple[int, ...]  # sorted content ids of one node's GPUs
_State = tuple[_Node, ...]  # sorted nodes


def _on_node(contents: _Contents, node: _Node, request: Request) -> set[_Node]:
    """Every distinct node state after placing the request on this node."""
    if request.profile_id is None:
        if node.count(contents.empty) < request.count:
            return set()
        rest = list(node)
        for _ in range(request.count):
            rest.remove(contents.empty)
        return {tuple(sorted((*rest, *[contents.whole] * request.count)))}
    states = {node}
    for _ in range(request.count):
        nxt: set[_Node] = set()
        for state in states:
            for position, content in enumerate(state):
                if position and state[position - 1] == content:
                    continue  # the same content on another GPU: the same outcome
                after = contents.add(content, request.profile_id)
                if after is not None:
                    nxt.add(tuple(sorted((*state[:position], after, *state[position + 1 :]))))
        states = nxt
    return states


def longest_prefix(
    gpus_per_node: Sequence[int], requests: Sequence[Request], max_states: int = 1_000_000
) -> int:
    """The largest k such that requests[:k] fit on the fleet together (exact).

    Fitting is monotone in k, so the search starts above the policy's result (a packing
    that exists) and goes up until a prefix does not fit. Raises RuntimeError when one
    check expands more than `max_states` states, rather than run unbounded."""
    contents = _Contents()
    start: _State = tuple(sorted(tuple([contents.empty] * k) for k in gpus_per_node))
    best = policy_prefix(gpus_per_node, requests)
    while best < len(requests) and _fits(contents, start, requests[: best + 1], max_states):
        best += 1
    return best


def _fits(contents: _Contents, start: _State, requests: Sequence[Request], max_states: int) -> bool:
    """Whether all the requests fit together: depth-first, the most constrained first (whole
    GPUs, then by compute and memory), pruned where the free compute or memory left is less
    than the rest needs."""
    items = sorted(requests, key=lambda r: (r.profile_id is not None, -r.compute, -r.memory))
    compute_left = [0] * (len(items) + 1)
    memory_left = [0] * (len(items) + 1)
    for i in range(len(items) - 1, -1, -1):
        compute_left[i] = compute_left[i + 1] + items[i].compute
        memory_left[i] = memory_left[i + 1] + items[i].memory
    seen: set[tuple[int, _State]] = set()
    stack: list[tuple[int, _State]] = [(0, start)]
    while stack:
        depth, state = stack.pop()
        if depth == len(items):
            return True
        if (depth, state) in seen:
            continue
        seen.add((depth, state))
        if len(seen) > max_states:
            raise RuntimeError(f"exhaustive packing gave up after {max_states:,} states")
        gpus = [content for node in state for content in node]
        if (
            sum(contents.free[c] for c in gpus) < compute_left[depth]
            or sum(contents.free_memory[c] for c in gpus) < memory_left[depth]
        ):
            continue
        for position, node in enumerate(state):
            if position and state[position - 1] == node:
                continue  # an identical node: the same outcomes
            for after in _on_node(contents, node, items[depth]):
                rest = (*state[:position], after, *state[position + 1 :])
                stack.append((depth + 1, tuple(sorted(rest))))
    return False
