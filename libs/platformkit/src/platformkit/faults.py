"""Named crash points for fault-injection tests and chaos runs.

A process started with GPUCLOUD_FAULTS=relay.after_publish (comma-separated names) dies
with SIGKILL semantics (os._exit, no cleanup, no flush) the first time it reaches that
point, exactly as `kill -9` would at that instruction. Unset in production, each check
is one frozenset lookup.
"""

import os

_ENABLED = frozenset(f for f in os.environ.get("GPUCLOUD_FAULTS", "").split(",") if f)


def crash_point(name: str) -> None:
    if name in _ENABLED:
        os._exit(137)
