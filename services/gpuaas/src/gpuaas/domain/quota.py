"""Project quotas, counted in compute slices: a whole GPU is 7, a MIG slice its profile's
compute slices (so 7 x 1g.10gb weigh the same as one GPU)."""

from gpuaas.domain.catalog import COMPUTE_SLICES, MigProfile

DEFAULT_PROJECT_QUOTA = 8 * COMPUTE_SLICES


class QuotaExceeded(Exception):
    def __init__(self, limit: int, in_use: int, requested: int) -> None:
        super().__init__(
            f"project quota of {limit} compute slices exceeded: {in_use} in use, {requested} asked"
        )
        self.limit, self.in_use, self.requested = limit, in_use, requested


def units(profile: MigProfile | None, count: int) -> int:
    return (profile.compute if profile else COMPUTE_SLICES) * count


def check_quota(limit: int, in_use: int, requested: int) -> None:
    if in_use + requested > limit:
        raise QuotaExceeded(limit, in_use, requested)
