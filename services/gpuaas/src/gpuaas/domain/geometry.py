"""MIG geometry of one GPU: which instances may coexist, and where a profile may start.

A GPU's layout is the set of instances on it. A placement is valid when the profile starts
at one of its valid starts, its contiguous memory slices stay inside the 8 and overlap no
other instance, compute slices add up to at most 7, at most one `+me` instance exists and
the profile's per-GPU maximum holds. A whole-GPU booking is the special instance
`WHOLE_GPU` that takes all 8 memory slices and all 7 compute slices.

Layouts are small (at most 7 instances), so everything here is a few bit operations; the
scoring of a layout is memoized by its canonical form, which keeps the scheduler fast on
thousands of GPUs.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache

from gpuaas.domain.catalog import COMPUTE_SLICES, MEMORY_SLICES, SHAPES, ProfileShape

FULL_MASK = (1 << MEMORY_SLICES) - 1


@dataclass(frozen=True, slots=True, order=True)
class Instance:
    """One booked instance on a GPU. `profile_id` None means the whole GPU (MIG off)."""

    start: int
    memory: int
    compute: int
    profile_id: int | None
    media_extension: bool = False

    @property
    def mask(self) -> int:
        return ((1 << self.memory) - 1) << self.start

    @property
    def slices(self) -> range:
        return range(self.start, self.start + self.memory)


WHOLE_GPU = Instance(start=0, memory=MEMORY_SLICES, compute=COMPUTE_SLICES, profile_id=None)


def instance_of(shape: ProfileShape, start: int) -> Instance:
    return Instance(start, shape.memory, shape.compute, shape.profile_id, shape.media_extension)


@dataclass(frozen=True, slots=True)
class Layout:
    """The instances on one GPU, kept sorted so equal layouts compare (and hash) equal."""

    instances: tuple[Instance, ...] = ()

    @classmethod
    def of(cls, instances: Iterable[Instance]) -> "Layout":
        return cls(tuple(sorted(instances)))

    @property
    def used_mask(self) -> int:
        mask = 0
        for i in self.instances:
            mask |= i.mask
        return mask

    @property
    def compute_used(self) -> int:
        return sum(i.compute for i in self.instances)

    @property
    def is_empty(self) -> bool:
        return not self.instances

    @property
    def is_whole(self) -> bool:
        return any(i.profile_id is None for i in self.instances)

    def add(self, instance: Instance) -> "Layout":
        return Layout.of((*self.instances, instance))

    def remove(self, instance: Instance) -> "Layout":
        rest = list(self.instances)
        rest.remove(instance)
        return Layout(tuple(rest))


class GeometryViolation(ValueError):
    """A layout that real hardware would refuse."""


def can_place(layout: Layout, shape: ProfileShape, start: int) -> bool:
    return can_place_profile(layout.instances, shape.profile_id, start)


@lru_cache(maxsize=65536)
def can_place_profile(instances: tuple[Instance, ...], profile_id: int, start: int) -> bool:
    shape = SHAPES[profile_id]
    if start not in shape.starts or start + shape.memory > MEMORY_SLICES:
        return False
    if any(i.profile_id is None for i in instances):
        return False
    new_mask = ((1 << shape.memory) - 1) << start
    used = 0
    compute = 0
    media = 0
    same = 0
    for i in instances:
        used |= i.mask
        compute += i.compute
        media += i.media_extension
        same += i.profile_id == profile_id
    return (
        not used & new_mask
        and compute + shape.compute <= COMPUTE_SLICES
        and not (shape.media_extension and media)
        and same < shape.max_per_gpu
    )


def valid_starts(layout: Layout, shape: ProfileShape) -> list[int]:
    return [s for s in shape.starts if can_place_profile(layout.instances, shape.profile_id, s)]


def check_layout(layout: Layout) -> None:
    """Raise GeometryViolation unless every instance could have been placed in turn."""
    if layout.is_whole:
        if len(layout.instances) != 1:
            raise GeometryViolation("a whole-GPU booking shares the GPU with another instance")
        return
    used = 0
    counts: dict[int, int] = {}
    for i in layout.instances:
        assert i.profile_id is not None
        shape = SHAPES[i.profile_id]
        if (i.memory, i.compute, i.media_extension) != (
            shape.memory,
            shape.compute,
            shape.media_extension,
        ):
            raise GeometryViolation(f"instance {i} does not match profile {shape.profile_id}")
        if i.start not in shape.starts or i.start + i.memory > MEMORY_SLICES:
            raise GeometryViolation(f"profile {shape.profile_id} cannot start at {i.start}")
        if used & i.mask:
            raise GeometryViolation(f"memory slices of {i} overlap another instance")
        used |= i.mask
        counts[i.profile_id] = counts.get(i.profile_id, 0) + 1
        if counts[i.profile_id] > shape.max_per_gpu:
            raise GeometryViolation(f"more than {shape.max_per_gpu} of profile {i.profile_id}")
    if layout.compute_used > COMPUTE_SLICES:
        raise GeometryViolation("more than 7 compute slices")
    if sum(i.media_extension for i in layout.instances) > 1:
        raise GeometryViolation("more than one +me instance")


# What can still be placed on a GPU depends only on its used memory slices, the compute
# used and whether a +me instance exists: every per-GPU maximum but +me's follows from the
# valid starts (7 starts for 1g, 4 for 1g.20gb, ...). Scores of a layout are computed on
# that compact state, `Room`, of which a GPU has at most 256 x 8 x 2.
Room = tuple[int, int, int]  # (used memory mask, compute used, 1 if a +me instance exists)


def room(instances: tuple[Instance, ...]) -> Room | None:
    """The compact state of a layout; None for a whole-GPU booking (no room at all)."""
    mask = compute = media = 0
    for i in instances:
        if i.profile_id is None:
            return None
        mask |= i.mask
        compute += i.compute
        media |= i.media_extension
    return (mask, compute, media)


def room_after(state: Room, shape: ProfileShape, start: int) -> Room | None:
    """The state after one more instance at `start`, or None where it does not fit (the
    same answer as `can_place_profile`)."""
    mask, compute, media = state
    new = ((1 << shape.memory) - 1) << start
    if (
        start not in shape.starts
        or start + shape.memory > MEMORY_SLICES
        or mask & new
        or compute + shape.compute > COMPUTE_SLICES
        or (shape.media_extension and media)
    ):
        return None
    return (mask | new, compute + shape.compute, media | shape.media_extension)


def headroom(instances: tuple[Instance, ...]) -> int:
    """How much room a layout leaves for future requests, weighted towards large profiles.

    Sum over profiles still placeable of (compute x memory slices x 4), plus the number of
    (profile, start) options left. A 7g or 4g that can still be placed dominates the score,
    so the policy keeps large profiles placeable as long as it can.
    """
    state = room(instances)
    return 0 if state is None else room_headroom(state)


@cache  # bounded: one entry per Room
def room_headroom(state: Room) -> int:
    score = 0
    for shape in SHAPES.values():
        options = sum(room_after(state, shape, s) is not None for s in shape.starts)
        if options:
            score += shape.compute * shape.memory * 4 + options
    return score


PROSPECT_SCALE = 7**7  # prospects are exact multiples of 1 / 7**7: see `prospects`


def prospects(instances: tuple[Instance, ...]) -> int:
    """How many more single MIG slices a GPU with this layout is expected to take before
    it first refuses one, if each next request is any of the 7 profiles with equal odds
    and each goes where this value stays highest; in units of 1 / PROSPECT_SCALE.

    A layout's whole future in one number, exact (at most 7 instances fit a GPU, so each
    level of the recursion divides by 7 once and 7**7 clears every denominator). It tells
    starts apart where headroom cannot: a 1g at slice 6 and at 5 keep the same profiles
    placeable, but not the same fills."""
    state = room(instances)
    return 0 if state is None else room_prospects(state)


@cache  # bounded: one entry per Room
def room_prospects(state: Room) -> int:
    total = 0
    for shape in SHAPES.values():
        after = [room_prospects(a) for s in shape.starts if (a := room_after(state, shape, s))]
        if after:
            total += PROSPECT_SCALE + max(after)
    value, rest = divmod(total, len(SHAPES))
    assert rest == 0, "prospects stay exact"
    return value


def largest_placeable_compute(layout: Layout) -> int:
    return max(
        (
            s.compute
            for s in SHAPES.values()
            if any(can_place_profile(layout.instances, s.profile_id, st) for st in s.starts)
        ),
        default=0,
    )


def fragmentation(layouts: Iterable[Layout]) -> float:
    """1 - (largest placeable compute / free compute), over GPUs with free compute.

    0 when every GPU's free compute can be taken by one instance; near 1 when free compute
    is scattered into pieces no larger profile can use.
    """
    free = 0
    usable = 0
    for layout in layouts:
        f = COMPUTE_SLICES - layout.compute_used
        if f > 0:
            free += f
            usable += largest_placeable_compute(layout)
    return 0.0 if free == 0 else 1.0 - usable / free
