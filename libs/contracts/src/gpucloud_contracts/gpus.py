"""The GPU catalog, once for the whole platform: SKUs (GPU models), their MIG profiles with
NVIDIA's exact geometry (../shared/design/mig.md; `nvidia-smi mig -lgipp`) and their public
list prices.

Who reads it: gpuaas's scheduler and API (`gpuaas.domain.catalog` re-exports it), the node
agent (the SKUs an inventory may declare), billing (the price keys it prices and their list
prices), and the seed rows of gpuaas's `skus` table and billing's list price book, which
`tools/contracts/generate.py --check` compares with this module (a catalog change needs a
new migration for databases that exist; the check fails until both agree).

A SKU key (`h100-80gb`) and a profile name (`1g.10gb`) are what billing prices by:
`gpu:<sku>` for whole GPUs, `mig:<sku>:<profile>` for MIG slices. Pure data, standard
library only, so pure domain code may import it.
"""

from dataclasses import dataclass

MEMORY_SLICES = 8
COMPUTE_SLICES = 7


@dataclass(frozen=True, slots=True)
class ProfileShape:
    """The geometry of a profile id, the same on every MIG-capable model."""

    profile_id: int
    compute: int
    memory: int
    max_per_gpu: int
    starts: tuple[int, ...]
    media_extension: bool = False


# profile id -> geometry (mig.md's table). Memory slice 7 is reachable only by 7g at 0
# and by profile 15 at 6, which the start lists encode.
SHAPES: dict[int, ProfileShape] = {
    19: ProfileShape(19, compute=1, memory=1, max_per_gpu=7, starts=(0, 1, 2, 3, 4, 5, 6)),
    20: ProfileShape(
        20, compute=1, memory=1, max_per_gpu=1, starts=(0, 1, 2, 3, 4, 5, 6), media_extension=True
    ),
    15: ProfileShape(15, compute=1, memory=2, max_per_gpu=4, starts=(0, 2, 4, 6)),
    14: ProfileShape(14, compute=2, memory=2, max_per_gpu=3, starts=(0, 2, 4)),
    9: ProfileShape(9, compute=3, memory=4, max_per_gpu=2, starts=(0, 4)),
    5: ProfileShape(5, compute=4, memory=4, max_per_gpu=1, starts=(0,)),
    0: ProfileShape(0, compute=7, memory=8, max_per_gpu=1, starts=(0,)),
}


@dataclass(frozen=True, slots=True)
class MigProfile:
    name: str
    shape: ProfileShape

    @property
    def profile_id(self) -> int:
        return self.shape.profile_id

    @property
    def compute(self) -> int:
        return self.shape.compute

    @property
    def memory(self) -> int:
        return self.shape.memory


@dataclass(frozen=True, slots=True)
class Sku:
    key: str
    name: str
    memory_gb: int
    mig_capable: bool
    profiles: tuple[MigProfile, ...]
    # The public list price of one whole GPU (USD micro-units per hour); a MIG slice's is
    # derived from it (`list_micros_per_hour`).
    list_micros_per_gpu_hour: int = 0

    def profile(self, name: str) -> MigProfile | None:
        return next((p for p in self.profiles if p.name == name), None)

    def price_key(self, profile: str | None) -> str:
        return f"mig:{self.key}:{profile}" if profile else f"gpu:{self.key}"


def _profiles(names: dict[int, str]) -> tuple[MigProfile, ...]:
    # Largest first: the order the API lists them and the policy weighs them.
    return tuple(
        MigProfile(name, SHAPES[pid])
        for pid, name in sorted(
            names.items(), key=lambda kv: (-SHAPES[kv[0]].compute, -SHAPES[kv[0]].memory, kv[0])
        )
    )


def _family(g1: str, g1x2: str, g3: str, g7: str) -> dict[int, str]:
    """Profile names of one memory size class: 1g, 1g with 2 memory slices, 3g/4g, 7g."""
    return {
        19: f"1g.{g1}gb",
        20: f"1g.{g1}gb+me",
        15: f"1g.{g1x2}gb",
        14: f"2g.{g1x2}gb",
        9: f"3g.{g3}gb",
        5: f"4g.{g3}gb",
        0: f"7g.{g7}gb",
    }


# key, name, memory (GB), the profile names' memory sizes (1g, 1g with two memory slices,
# 3g/4g, 7g) and the whole GPU's list price (USD micro-units per hour). Every one is MIG
# capable.
_MODELS = (
    ("a100-40gb", "NVIDIA A100 40GB", 40, ("5", "10", "20", "40"), 1_800_000),
    ("a100-80gb", "NVIDIA A100 80GB", 80, ("10", "20", "40", "80"), 2_200_000),
    ("h100-80gb", "NVIDIA H100 80GB", 80, ("10", "20", "40", "80"), 3_600_000),
    ("h200-141gb", "NVIDIA H200 141GB", 141, ("18", "35", "71", "141"), 4_500_000),
)
SKUS: dict[str, Sku] = {
    key: Sku(key, name, memory, True, _profiles(_family(*sizes)), price)
    for key, name, memory, sizes, price in _MODELS
}


def sku(key: str) -> Sku | None:
    return SKUS.get(key)


def list_micros_per_hour(sku: Sku, profile: MigProfile | None = None) -> int:
    """The public list price of a whole GPU, or of a MIG slice pro rata by the larger of its
    shares of the GPU's 7 compute and 8 memory slices (a slice holding 2/8 of the memory
    blocks that memory from every other profile), rounded up to the micro-unit."""
    whole = sku.list_micros_per_gpu_hour
    if profile is None:
        return whole
    share = max(profile.compute * MEMORY_SLICES, profile.memory * COMPUTE_SLICES)
    return -(-whole * share // (COMPUTE_SLICES * MEMORY_SLICES))


def list_price_book() -> dict[str, int]:
    """Every price key of the catalog (`gpu:<sku>`, `mig:<sku>:<profile>`) -> its public list
    price: billing's seeded price book (migration 0004, checked against this by
    `tools/contracts/generate.py --check`)."""
    book: dict[str, int] = {}
    for s in SKUS.values():
        book[s.price_key(None)] = list_micros_per_hour(s)
        for p in s.profiles:
            book[s.price_key(p.name)] = list_micros_per_hour(s, p)
    return book
