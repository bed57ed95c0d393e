"""What a launch asks for, checked against the release's manifest (pure): the environment
(the manifest's defaults, the launcher's values for declared variables, every variable
required at launch given) and the resources (a concrete SKU: the manifest's, or one whose
memory is in its range, preferring SKUs the fleet's ready nodes have, then the cheapest).
Problems name the request's field (`env.API_KEY`, `resources.sku`)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from gpucloud_contracts import gpus
from gpucloud_manifest import Manifest, Resources


@dataclass(frozen=True)
class Problem:
    field: str
    message: str


def resolve_env(
    manifest: Manifest, given: Mapping[str, str], *, launching: bool = True
) -> tuple[dict[str, str], list[Problem]]:
    problems = [
        Problem(f"env.{name}", "is not declared by the app's manifest")
        for name in given
        if name not in manifest.env
    ]
    env = {name: var.value for name, var in manifest.env.items() if var.value is not None}
    env.update({k: v for k, v in given.items() if k in manifest.env})
    if launching:
        problems += [
            Problem(f"env.{name}", "is required at launch")
            for name in manifest.required_env()
            if name not in given
        ]
    return env, problems


def _fits(sku: gpus.Sku, wanted: Resources) -> bool:
    memory = wanted.gpu_memory_gb
    if memory is not None and (
        sku.memory_gb < memory.min or (memory.max is not None and sku.memory_gb > memory.max)
    ):
        return False
    return wanted.mig_profile is None or sku.profile(wanted.mig_profile) is not None


def resolve_resources(
    wanted: Resources,
    sku: str | None,
    count: int | None,
    fleet_skus: Collection[str] = (),
) -> tuple[dict[str, object] | None, list[Problem]]:
    """{sku, mig_profile, count} for the replica's allocation, or the problems."""
    problems: list[Problem] = []
    if count is not None and count > wanted.count:
        problems.append(Problem("resources.count", f"must be <= {wanted.count} (the manifest's)"))
    chosen: str | None = None
    if sku is not None:
        known = gpus.sku(sku)
        if known is None:
            problems.append(Problem("resources.sku", f"{sku!r} is not a GPU SKU"))
        elif wanted.sku is not None and sku != wanted.sku:
            problems.append(Problem("resources.sku", f"the manifest asks for {wanted.sku!r}"))
        elif not _fits(known, wanted):
            problems.append(Problem("resources.sku", f"{sku!r} is outside the manifest's range"))
        else:
            chosen = sku
    elif wanted.sku is not None:
        chosen = wanted.sku
    else:
        fitting = [s for s in gpus.SKUS.values() if _fits(s, wanted)]
        fitting.sort(key=lambda s: (s.key not in fleet_skus, s.list_micros_per_gpu_hour, s.key))
        if not fitting:
            problems.append(Problem("resources", "no GPU SKU fits the manifest's resources"))
        else:
            chosen = fitting[0].key
    if problems or chosen is None:
        return None, problems
    return {"sku": chosen, "mig_profile": wanted.mig_profile, "count": count or wanted.count}, []
