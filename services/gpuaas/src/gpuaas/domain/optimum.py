"""The exact packer that the placement policy is measured against (tests, bench).

A request sequence arrives on a small fleet and nothing is released. The policy places
requests one by one, online, until its first refusal (`policy_prefix`). The optimum is the
longest prefix of the same sequence that fits on the fleet at once, every placement allowed
and the whole sequence known in advance (`longest_prefix`): an exhaustive search, so only for
a few GPUs. policy / optimum is the packing quality; 1.0 means the policy never refused a
request that some packing could still have taken. An online policy cannot always reach
1.0 (the optimum knows which requests come next), so the ratio compares policies.

Whether instances fit one GPU together depends only on which profiles they are (some
choice of starts holds them all), not on the order they came in, so the search tracks
each GPU's multiset of profiles and never branches on starts. States are canonical (GPUs
of a node and nodes of equal shape are interchangeable: sorted tuples), every expanded
state is remembered, requests are placed most constrained first (whole GPUs, then by size)
and a branch is pruned where the free compute or memory left cannot hold the rest; the
trailing 1g and 1g+me instances are counted into the GPUs' spare places without search.
"""

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from gpuaas.domain.catalog import COMPUTE_SLICES, MEMORY_SLICES, SHAPES, ProfileShape
from gpuaas.domain.geometry import Instance, Layout, can_place_profile, instance_of
from gpuaas.domain.placement import Decision, GpuState, NodeCapacity, place


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


Policy = Callable[[Sequence[NodeCapacity], ProfileShape | None, int], Decision | None]


def policy_prefix(
    gpus_per_node: Sequence[int], requests: Sequence[Request], policy: Policy = place
) -> int:
    """How many requests a policy (`placement.place` by default) takes, in order, before
    its first refusal. Node n has id n << 64 and GPU i of it (n << 16) + i: node-id order is
    the order of `gpus_per_node`."""
    ids = [[uuid.UUID(int=(n << 16) + i) for i in range(k)] for n, k in enumerate(gpus_per_node)]
    nodes = [uuid.UUID(int=n << 64) for n in range(len(gpus_per_node))]
    layouts = {g: Layout() for gs in ids for g in gs}
    for taken, r in enumerate(requests):
        snapshot = [
            NodeCapacity(node, tuple(GpuState(g, i, layouts[g]) for i, g in enumerate(gs)))
            for node, gs in zip(nodes, ids, strict=True)
        ]
        decision = policy(snapshot, None if r.profile_id is None else SHAPES[r.profile_id], r.count)
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
        self._small: dict[int, tuple[int, int | None]] = {}
        self.empty = self.id(())
        self.whole = self.id((self.WHOLE,))

    def id(self, profiles: tuple[int, ...]) -> int:
        found = self.ids.get(profiles)
        if found is None:
            found = self.ids[profiles] = len(self.contents)
            self.contents.append(profiles)
            whole = self.WHOLE in profiles
            self.free.append(
                0 if whole else COMPUTE_SLICES - sum(SHAPES[p].compute for p in profiles)
            )
            self.free_memory.append(
                0 if whole else MEMORY_SLICES - sum(SHAPES[p].memory for p in profiles)
            )
        return found

    def add(self, content: int, profile_id: int) -> int | None:
        """The content with one more instance of the profile, or None where no starts fit."""
        key = (content, profile_id)
        if key not in self._added:
            profiles = tuple(sorted((*self.contents[content], profile_id)))
            self._added[key] = self.id(profiles) if profiles in _realizable() else None
        return self._added[key]

    def small_capacity(self, content: int) -> tuple[int, int | None]:
        """How many more 1g instances (profile 19) fit: without, and with, one more +me
        instance (profile 20; None where that does not fit)."""
        found = self._small.get(content)
        if found is None:
            found = self._small[content] = (self._ones(content), None)
            with_me = self.add(content, 20)
            if with_me is not None:
                found = self._small[content] = (found[0], self._ones(with_me))
        return found

    def _ones(self, content: int) -> int:
        n = 0
        while (bigger := self.add(content, 19)) is not None:
            content, n = bigger, n + 1
        return n


@lru_cache(maxsize=1)
def _realizable() -> frozenset[tuple[int, ...]]:
    """Every multiset of profiles (sorted ids) that some choice of starts fits on one GPU:
    the layouts reachable from an empty GPU, a few thousand."""
    seen: set[tuple[Instance, ...]] = {()}
    frontier: list[tuple[Instance, ...]] = [()]
    while frontier:
        layout = frontier.pop()
        for profile_id, shape in SHAPES.items():
            for start in shape.starts:
                if can_place_profile(layout, profile_id, start):
                    bigger = tuple(sorted((*layout, instance_of(shape, start))))
                    if bigger not in seen:
                        seen.add(bigger)
                        frontier.append(bigger)
    return frozenset(tuple(sorted(i.profile_id or 0 for i in layout)) for layout in seen)


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
    gpus_per_node: Sequence[int],
    requests: Sequence[Request],
    at_least: int = 0,
    max_states: int = 1_000_000,
) -> int:
    """The largest k such that requests[:k] fit on the fleet together (exact).

    Fitting is monotone in k, so the search goes up from `at_least` (a prefix known to fit,
    such as a policy's result) until a prefix does not fit. Raises RuntimeError when one
    check expands more than `max_states` states, rather than run unbounded."""
    contents = _Contents()
    start: _State = tuple(sorted(tuple([contents.empty] * k) for k in gpus_per_node))
    best = at_least
    while best < len(requests) and _fits(contents, start, requests[: best + 1], max_states):
        best += 1
    return best


_SMALL = (19, 20)  # 1g and 1g+me: one compute and one memory slice, any start 0-6


def _most_constrained_first(r: Request) -> tuple[bool, int, int, bool]:
    return (r.profile_id is not None, -r.compute, -r.memory, r.profile_id != 20)


def _fits(contents: _Contents, start: _State, requests: Sequence[Request], max_states: int) -> bool:
    """Whether all the requests fit together: depth-first, the most constrained first (whole
    GPUs, then by compute and memory), pruned where the free compute or memory left is less
    than the rest needs. The tail of 1g and 1g+me instances is decided without search."""
    items = sorted(requests, key=_most_constrained_first)
    compute_left = [0] * (len(items) + 1)
    memory_left = [0] * (len(items) + 1)
    tail = len(items)
    for i in range(len(items) - 1, -1, -1):
        compute_left[i] = compute_left[i + 1] + items[i].compute
        memory_left[i] = memory_left[i + 1] + items[i].memory
        if tail == i + 1 and items[i].profile_id in _SMALL and items[i].count == 1:
            tail = i
    media = sum(r.profile_id == 20 for r in items[tail:])
    seen: set[tuple[int, _State]] = set()
    stack: list[tuple[int, _State]] = [(0, start)]
    while stack:
        depth, state = stack.pop()
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
        if depth == tail:
            if _small_fit(contents, gpus, len(items) - tail - media, media):
                return True
            continue
        for position, node in enumerate(state):
            if position and state[position - 1] == node:
                continue  # an identical node: the same outcomes
            for after in _on_node(contents, node, items[depth]):
                rest = (*state[:position], after, *state[position + 1 :])
                stack.append((depth + 1, tuple(sorted(rest))))
    return False


def _small_fit(contents: _Contents, gpus: list[int], ones: int, media: int) -> bool:
    """Whether `ones` 1g and `media` 1g+me instances fit on GPUs holding these contents.
    1g instances go anywhere one fits, so only which GPUs take a +me matters: the ones
    where it costs the fewest 1g places."""
    without = 0
    gains: list[int] = []
    for content in gpus:
        alone, with_me = contents.small_capacity(content)
        without += alone
        if with_me is not None:
            gains.append(with_me - alone)
    if len(gains) < media:
        return False
    gains.sort(reverse=True)
    return without + sum(gains[:media]) >= ones
