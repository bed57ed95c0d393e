"""The exact packer (domain/optimum.py), the scores the policy ranks by (geometry.prospects,
room_after) and the policy measured against the packer."""

import random
import uuid
from fractions import Fraction
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from gpuaas.domain.catalog import SHAPES
from gpuaas.domain.geometry import (
    PROSPECT_SCALE,
    WHOLE_GPU,
    Instance,
    Layout,
    can_place_profile,
    instance_of,
    prospects,
    room,
    room_after,
)
from gpuaas.domain.optimum import Request, longest_prefix, policy_prefix
from gpuaas.domain.placement import GpuState, NodeCapacity, place

MIG = sorted(SHAPES)  # profile ids
Layouts = tuple[tuple[Instance, ...], ...]


def _add(instances: tuple[Instance, ...], pid: int, start: int) -> tuple[Instance, ...]:
    return tuple(sorted((*instances, instance_of(SHAPES[pid], start))))


def _layout(choices: list[tuple[int, int]]) -> tuple[Instance, ...]:
    """A valid layout: each (profile, pick) adds the profile at its pick-th free start."""
    instances: tuple[Instance, ...] = ()
    for pid, pick in choices:
        starts = [s for s in SHAPES[pid].starts if can_place_profile(instances, pid, s)]
        if starts:
            instances = _add(instances, pid, starts[pick % len(starts)])
    return instances


layouts = st.lists(st.tuples(st.sampled_from(MIG), st.integers(0, 6)), max_size=8).map(_layout)


@given(layouts)
def test_room_after_answers_like_can_place_profile(instances):
    state = room(instances)
    assert state is not None
    for pid in MIG:
        for start in range(8):
            fits = room_after(state, SHAPES[pid], start) is not None
            assert fits == can_place_profile(instances, pid, start)
    assert room((WHOLE_GPU,)) is None


@cache
def _expected(instances: tuple[Instance, ...]) -> Fraction:
    """The definition of prospects, on instances and exact fractions (slow reference)."""
    total = Fraction(0)
    for pid, shape in SHAPES.items():
        after = [
            _expected(_add(instances, pid, s))
            for s in shape.starts
            if can_place_profile(instances, pid, s)
        ]
        if after:
            total += (1 + max(after)) / len(SHAPES)
    return total


@settings(deadline=None)
@given(layouts.filter(lambda instances: len(instances) >= 2))
def test_prospects_is_the_exact_expectation(instances):
    assert prospects(instances) == _expected(instances) * PROSPECT_SCALE


# --- the exhaustive packer against a plain brute force over (GPU, start) -----------------


def _brute_force(fleet: list[int], requests: list[Request]) -> int:
    """The longest prefix placeable in order, trying every GPU and start (no symmetry, no
    multisets, no bounds): what longest_prefix must equal."""
    node_of = [n for n, k in enumerate(fleet) for _ in range(k)]

    @cache
    def go(depth: int, state: Layouts) -> int:
        if depth == len(requests):
            return depth
        r = requests[depth]
        best = depth
        for node in range(len(fleet)):
            for after in _placements(state, [g for g, n in enumerate(node_of) if n == node], r):
                best = max(best, go(depth + 1, after))
        return best

    return go(0, tuple(() for _ in node_of))


def _placements(state: Layouts, gpus: list[int], r: Request) -> list[Layouts]:
    if r.profile_id is None:
        empty = [g for g in gpus if not state[g]][: r.count]
        if len(empty) < r.count:
            return []
        return [tuple((WHOLE_GPU,) if g in empty else lay for g, lay in enumerate(state))]
    outcomes = [state]
    for _ in range(r.count):
        outcomes = [
            tuple(_add(lay, r.profile_id, s) if g == gpu else lay for g, lay in enumerate(o))
            for o in outcomes
            for gpu in gpus
            for s in SHAPES[r.profile_id].starts
            if can_place_profile(o[gpu], r.profile_id, s)
        ]
    return outcomes


small_requests = st.one_of(
    st.builds(Request, st.sampled_from(MIG), st.integers(1, 2)),
    st.builds(Request, st.none(), st.integers(1, 2)),
)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([[1], [2], [3], [1, 1], [2, 1], [1, 1, 1]]),
    st.lists(small_requests, max_size=4),
)
def test_the_exhaustive_packer_agrees_with_brute_force(fleet, requests):
    assert longest_prefix(fleet, requests) == _brute_force(fleet, requests)


requests = st.one_of(
    st.builds(Request, st.sampled_from(MIG)),
    st.builds(Request, st.none(), st.sampled_from([1, 1, 2])),
    st.builds(Request, st.sampled_from(MIG), st.just(2)),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=1, max_size=2), st.lists(requests, max_size=30))
def test_the_policy_takes_at_most_the_optimum_and_the_optimum_is_one_number(fleet, requests):
    """policy <= optimum (the packer finds every packing the policy finds), and the optimum
    does not depend on the lower bound it starts from."""
    taken = policy_prefix(fleet, requests)
    best = longest_prefix(fleet, requests, at_least=taken)
    assert taken <= best
    assert longest_prefix(fleet, requests) == best
    assert best == len(requests) or longest_prefix(fleet, requests[: best + 1]) == best


def test_the_policy_stays_near_the_optimum_on_a_fixed_sample():
    """A regression guard with a measured floor: 300 seeded fleets of 1-2 nodes x 1-3 GPUs,
    10 requests per GPU, 15 % whole GPUs. The policy measured 0.9840 here (the policy
    before issue 16: 0.9794; first fit 0.9437); see bench/scheduler.py for the figures."""
    mig = [19, 20, 15, 14, 9, 5, 0]
    ratios = []
    for seed in range(300):
        rng = random.Random(seed)
        fleet = [rng.randint(1, 3) for _ in range(rng.randint(1, 2))]
        counts = [1, 1, 2] if max(fleet) > 1 else [1]
        sequence = [
            Request(None, rng.choice(counts)) if rng.random() < 0.15 else Request(rng.choice(mig))
            for _ in range(10 * sum(fleet))
        ]
        taken = policy_prefix(fleet, sequence)
        ratios.append(taken / longest_prefix(fleet, sequence, at_least=taken))
    assert sum(ratios) / len(ratios) >= 0.98


# --- the weak spots the packer found ----------------------------------------------------


def _node(*layouts: Layout, node_id: int = 1) -> NodeCapacity:
    gpus = (GpuState(uuid.UUID(int=(node_id << 16) + i), i, lay) for i, lay in enumerate(layouts))
    return NodeCapacity(uuid.UUID(int=node_id << 64), tuple(gpus))


def _book(nodes: list[NodeCapacity], pid: int | None, count: int = 1) -> list[NodeCapacity]:
    decision = place(nodes, SHAPES[pid] if pid is not None else None, count)
    assert decision is not None
    booked = {b.gpu_id: b.instance for b in decision.bookings}
    return [
        NodeCapacity(
            n.node_id,
            tuple(
                GpuState(g.gpu_id, g.index, g.layout.add(booked[g.gpu_id]))
                if g.gpu_id in booked
                else g
                for g in n.gpus
            ),
        )
        for n in nodes
    ]


def test_a_small_slice_does_not_block_the_larger_profile_left_on_the_fullest_gpu():
    # A holds a 3g at 0 (a 3g still fits at 4), B a 1g.20gb at 4 (a 4g still fits at 0).
    # The fullest GPU first would put a 1g on A at 6 and lose A's 3g; it goes to B at 6.
    a = Layout().add(instance_of(SHAPES[9], 0))
    b = Layout().add(instance_of(SHAPES[15], 4))
    nodes = _book([_node(a, b)], 19)
    assert nodes[0].gpus[1].layout == b.add(instance_of(SHAPES[19], 6))
    nodes = _book(nodes, 9)  # the 3g, then the 4g: both still fit
    _book(nodes, 5)


def test_a_slice_for_an_empty_gpu_goes_to_the_node_with_the_fewest_empty_gpus():
    two, one = _node(Layout(), Layout(), node_id=1), _node(Layout(), node_id=2)
    nodes = _book([two, one], 5)  # a 4g: on the one-GPU node, so 2 whole GPUs still fit
    assert nodes[1].gpus[0].layout.instances and not nodes[0].gpus[0].layout.instances
    _book(nodes, None, 2)


def test_a_2g_on_an_empty_gpu_keeps_the_4g_place():
    """The measured trade-off (weak spot 2): 2g at 4 keeps a 4g placeable and gives up the
    2g + 2g + 3g fill that 2g at 0 would keep; preferring the fill took fewer requests
    against the optimum (bench/scheduler.py, docs/gpuaas.md)."""
    nodes = _book([_node(Layout())], 14)
    assert nodes[0].gpus[0].layout.instances[0].start == 4
    _book(nodes, 5)
