import pytest

from gpuaas.domain.catalog import SHAPES, SKUS
from gpuaas.domain.geometry import (
    WHOLE_GPU,
    GeometryViolation,
    Layout,
    can_place,
    check_layout,
    fragmentation,
    instance_of,
    valid_starts,
)


class TestCatalog:
    def test_every_mig_sku_has_the_seven_profiles_with_mig_md_names(self):
        assert set(SKUS) == {"a100-40gb", "a100-80gb", "h100-80gb", "h200-141gb"}
        names = {k: {p.profile_id: p.name for p in s.profiles} for k, s in SKUS.items()}
        assert names["a100-40gb"] == {
            19: "1g.5gb",
            20: "1g.5gb+me",
            15: "1g.10gb",
            14: "2g.10gb",
            9: "3g.20gb",
            5: "4g.20gb",
            0: "7g.40gb",
        }
        assert names["h100-80gb"] == names["a100-80gb"]
        assert names["h100-80gb"][15] == "1g.20gb"
        assert names["h200-141gb"] == {
            19: "1g.18gb",
            20: "1g.18gb+me",
            15: "1g.35gb",
            14: "2g.35gb",
            9: "3g.71gb",
            5: "4g.71gb",
            0: "7g.141gb",
        }

    def test_geometry_matches_the_placement_table(self):
        table = {
            19: (1, 1, 7, (0, 1, 2, 3, 4, 5, 6)),
            20: (1, 1, 1, (0, 1, 2, 3, 4, 5, 6)),
            15: (1, 2, 4, (0, 2, 4, 6)),
            14: (2, 2, 3, (0, 2, 4)),
            9: (3, 4, 2, (0, 4)),
            5: (4, 4, 1, (0,)),
            0: (7, 8, 1, (0,)),
        }
        for pid, (compute, memory, most, starts) in table.items():
            s = SHAPES[pid]
            assert (s.compute, s.memory, s.max_per_gpu, s.starts) == (compute, memory, most, starts)

    def test_price_keys(self):
        assert SKUS["h100-80gb"].price_key(None) == "gpu:h100-80gb"
        assert SKUS["h100-80gb"].price_key("1g.10gb") == "mig:h100-80gb:1g.10gb"


class TestGeometry:
    def test_memory_slice_7_only_for_7g_3g_at_4_or_profile_15_at_6(self):
        # mig.md's prose omits 3g at {4}:4, which its own table (and 4g+3g filling a GPU)
        # implies covers slice 7; the placement table is what hardware prints.
        layout = Layout()
        for pid, shape in SHAPES.items():
            reach_7 = [s for s in valid_starts(layout, shape) if s + shape.memory > 7]
            assert reach_7 == {0: [0], 9: [4], 15: [6]}.get(pid, [])

    def test_4g_plus_3g_fills_a_gpu(self):
        layout = Layout().add(instance_of(SHAPES[5], 0)).add(instance_of(SHAPES[9], 4))
        check_layout(layout)
        assert all(not valid_starts(layout, s) for s in SHAPES.values())

    def test_7g_needs_all_eight_slices(self):
        layout = Layout().add(instance_of(SHAPES[19], 6))
        assert not valid_starts(layout, SHAPES[0])

    def test_at_most_one_media_extension(self):
        layout = Layout().add(instance_of(SHAPES[20], 0))
        assert not valid_starts(layout, SHAPES[20])
        assert valid_starts(layout, SHAPES[19])

    def test_overlap_is_refused_and_detected(self):
        layout = Layout().add(instance_of(SHAPES[14], 2))
        assert not can_place(layout, SHAPES[19], 3)
        with pytest.raises(GeometryViolation):
            check_layout(layout.add(instance_of(SHAPES[19], 3)))

    def test_invalid_start_is_refused(self):
        assert not can_place(Layout(), SHAPES[9], 2)
        with pytest.raises(GeometryViolation):
            check_layout(Layout().add(instance_of(SHAPES[9], 2)))

    def test_whole_gpu_excludes_everything(self):
        layout = Layout().add(WHOLE_GPU)
        assert all(not valid_starts(layout, s) for s in SHAPES.values())
        with pytest.raises(GeometryViolation):
            check_layout(layout.add(instance_of(SHAPES[19], 0)))

    def test_compute_never_exceeds_seven(self):
        layout = Layout.of(instance_of(SHAPES[19], s) for s in range(7))
        check_layout(layout)
        assert layout.compute_used == 7
        assert not valid_starts(layout, SHAPES[15])

    def test_fragmentation_prefers_a_1g_at_the_end(self):
        at_start = Layout().add(instance_of(SHAPES[19], 0))
        at_end = Layout().add(instance_of(SHAPES[19], 6))
        assert fragmentation([at_end]) < fragmentation([at_start])
        assert fragmentation([Layout()]) == 0.0
