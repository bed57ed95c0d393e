"""Property tests: random allocate/release sequences through the placement policy never
break MIG geometry, never overlap a memory slice and never exceed a project's quota."""

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from gpuaas.domain.catalog import SHAPES, SKUS
from gpuaas.domain.geometry import Layout, check_layout, fragmentation, instance_of
from gpuaas.domain.placement import GpuState, NodeCapacity, place
from gpuaas.domain.quota import QuotaExceeded, check_quota, units

SKU = SKUS["h100-80gb"]
PROFILES = [None, *SKU.profiles]

step = st.one_of(
    st.tuples(
        st.just("alloc"),
        st.sampled_from(range(len(PROFILES))),
        st.integers(1, 3),
        st.integers(0, 2),
    ),
    st.tuples(st.just("release"), st.integers(0, 10_000), st.just(0), st.just(0)),
)


def _nodes(layouts: dict[uuid.UUID, Layout], shape: dict[uuid.UUID, list[uuid.UUID]]):
    return [
        NodeCapacity(n, tuple(GpuState(g, i, layouts[g]) for i, g in enumerate(gpus)))
        for n, gpus in shape.items()
    ]


@settings(max_examples=150, deadline=None)
@given(st.lists(step, max_size=60))
def test_random_allocate_release_keeps_geometry_and_quota(steps):
    nodes = {uuid.uuid4(): [uuid.uuid4() for _ in range(4)] for _ in range(2)}
    layouts = {g: Layout() for gpus in nodes.values() for g in gpus}
    node_of = {g: n for n, gpus in nodes.items() for g in gpus}
    quota = {0: 40, 1: 14, 2: 7}
    in_use = {0: 0, 1: 0, 2: 0}
    live: list[tuple[int, int, list]] = []
    for kind, a, b, project in steps:
        if kind == "alloc":
            profile = PROFILES[a]
            requested = units(profile, b)
            try:
                check_quota(quota[project], in_use[project], requested)
            except QuotaExceeded:
                assert in_use[project] + requested > quota[project]
                continue
            decision = place(_nodes(layouts, nodes), profile.shape if profile else None, b)
            if decision is None:
                continue
            assert len(decision.bookings) == b
            assert {node_of[bk.gpu_id] for bk in decision.bookings} == {decision.node_id}
            for bk in decision.bookings:
                layouts[bk.gpu_id] = layouts[bk.gpu_id].add(bk.instance)
            in_use[project] += requested
            live.append((project, requested, list(decision.bookings)))
        elif live:
            project, requested, bookings = live.pop(a % len(live))
            for bk in bookings:
                layouts[bk.gpu_id] = layouts[bk.gpu_id].remove(bk.instance)
            in_use[project] -= requested
        for layout in layouts.values():
            check_layout(layout)  # no overlap, valid starts, <= 7 compute, <= 1 +me
        assert all(in_use[p] <= quota[p] for p in quota)
        assert 0.0 <= fragmentation(layouts.values()) <= 1.0


@given(st.lists(st.sampled_from([19, 15, 14, 9, 5]), min_size=1, max_size=12))
def test_policy_never_places_where_geometry_refuses(pids):
    gpu = uuid.uuid4()
    node = uuid.uuid4()
    layout = Layout()
    for pid in pids:
        decision = place([NodeCapacity(node, (GpuState(gpu, 0, layout),))], SHAPES[pid], 1)
        possible = any(
            layout.add(instance_of(SHAPES[pid], s))
            for s in SHAPES[pid].starts
            if _ok(layout, pid, s)
        )
        assert (decision is not None) == possible
        if decision:
            layout = layout.add(decision.bookings[0].instance)
            check_layout(layout)


def _ok(layout: Layout, pid: int, start: int) -> bool:
    from gpuaas.domain.geometry import GeometryViolation

    try:
        check_layout(layout.add(instance_of(SHAPES[pid], start)))
    except GeometryViolation:
        return False
    return True


def test_policy_keeps_a_4g_placeable_after_small_slices():
    gpu, node = uuid.uuid4(), uuid.uuid4()
    layout = Layout()
    for _ in range(3):
        d = place([NodeCapacity(node, (GpuState(gpu, 0, layout),))], SHAPES[19], 1)
        assert d is not None
        layout = layout.add(d.bookings[0].instance)
    # First-fit would have put them at 0, 1, 2 and blocked the 4g (start 0 only).
    assert place([NodeCapacity(node, (GpuState(gpu, 0, layout),))], SHAPES[5], 1) is not None


def test_partially_used_gpus_fill_before_empty_ones():
    node = uuid.uuid4()
    used, empty = uuid.uuid4(), uuid.uuid4()
    layout = Layout().add(instance_of(SHAPES[19], 6))
    d = place(
        [NodeCapacity(node, (GpuState(empty, 0, Layout()), GpuState(used, 1, layout)))],
        SHAPES[19],
        1,
    )
    assert d is not None and d.bookings[0].gpu_id == used


def test_whole_gpus_best_fit_on_one_node():
    small = NodeCapacity(uuid.uuid4(), tuple(GpuState(uuid.uuid4(), i, Layout()) for i in range(2)))
    big = NodeCapacity(uuid.uuid4(), tuple(GpuState(uuid.uuid4(), i, Layout()) for i in range(8)))
    d = place([big, small], None, 2)
    assert d is not None and d.node_id == small.node_id
    d = place([big, small], None, 3)
    assert d is not None and d.node_id == big.node_id and len(d.bookings) == 3
    assert place([big, small], None, 9) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(step, max_size=80), st.integers(1, 4))
def test_the_index_decides_exactly_like_the_scan(steps, n_nodes):
    from gpuaas.domain.placement_index import PlacementIndex

    index = PlacementIndex()
    for _ in range(n_nodes):
        index.add_node(
            NodeCapacity(uuid.uuid4(), tuple(GpuState(uuid.uuid4(), i, Layout()) for i in range(3)))
        )
    live: list = []
    for kind, a, b, _ in steps:
        if kind == "alloc":
            profile = PROFILES[a]
            shape = profile.shape if profile else None
            expected = place(index.snapshot(), shape, b)
            assert index.place(shape, b) == expected
            if expected is not None:
                index.book(expected)
                live.append(list(expected.bookings))
        elif live:
            index.free(live.pop(a % len(live)))
        for node in index.snapshot():  # never double-booked: what the (gpu, slice) key enforces
            for gpu in node.gpus:
                check_layout(gpu.layout)


@settings(max_examples=60, deadline=None)
@given(st.lists(step, max_size=60), st.integers(1, 4), st.data())
def test_a_bulk_built_or_node_reloaded_index_decides_like_the_scan(steps, n_nodes, data):
    """`build` from rows, and `set_node` / `remove_node` replacing whole nodes (what the
    live index does on another replica's change), keep the index equal to the scan."""
    from gpuaas.domain.placement_index import PlacementIndex

    reference = PlacementIndex()
    for _ in range(n_nodes):
        reference.add_node(
            NodeCapacity(uuid.uuid4(), tuple(GpuState(uuid.uuid4(), i, Layout()) for i in range(3)))
        )
    live: list = []
    for kind, a, b, _ in steps:
        if kind == "alloc":
            profile = PROFILES[a]
            decision = reference.place(profile.shape if profile else None, b)
            if decision is not None:
                reference.book(decision)
                live.append(list(decision.bookings))
        elif live:
            reference.free(live.pop(a % len(live)))
    nodes = reference.snapshot()
    rows = [(n.node_id, g.gpu_id, g.index, g.layout) for n in nodes for g in n.gpus]
    built = PlacementIndex.build(data.draw(st.permutations(rows)))
    assert built.snapshot() == nodes
    # Replace a random node with its own state, drop another and add it back.
    reloaded = PlacementIndex.build(rows)
    victim = data.draw(st.sampled_from(nodes))
    reloaded.remove_node(victim.node_id)
    assert victim.node_id not in reloaded.node_ids
    reloaded.set_node(victim)
    reloaded.set_node(data.draw(st.sampled_from(nodes)))
    assert reloaded.snapshot() == nodes
    for profile in PROFILES:
        for count in (1, 2):
            shape = profile.shape if profile else None
            expected = place(nodes, shape, count)
            assert built.place(shape, count) == expected
            assert reloaded.place(shape, count) == expected
