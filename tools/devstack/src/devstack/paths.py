"""Where things live: the repository root and the state folder (.state/, or
$GPUCLOUD_DEVSTACK_HOME / $GPUCLOUD_STATE_DIR for an isolated stack beside the default one)."""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path


@cache
def repo_root() -> Path:
    """The repository root: the folder holding deploy/fleet.toml above this package, else git's."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "deploy" / "fleet.toml").is_file():
            return parent
    out = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


def state_dir() -> Path:
    """The state folder: $GPUCLOUD_DEVSTACK_HOME, else $GPUCLOUD_STATE_DIR, else <repo>/.state
    (git-ignored). An isolated stack (the chaos run) sets GPUCLOUD_DEVSTACK_HOME together with
    GPUCLOUD_DEVSTACK_PORT_OFFSET (fleet.py) so it shares nothing with the default one."""
    override = os.environ.get("GPUCLOUD_DEVSTACK_HOME") or os.environ.get("GPUCLOUD_STATE_DIR")
    path = Path(override).resolve() if override else repo_root() / ".state"
    path.mkdir(parents=True, exist_ok=True)
    return path


def logs_dir() -> Path:
    path = state_dir() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pids_dir() -> Path:
    path = state_dir() / "pids"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fleet_file() -> Path:
    return repo_root() / "deploy" / "fleet.toml"


def venv_python() -> Path:
    """The workspace interpreter that runs every service (`python -m <package>`)."""
    return repo_root() / ".venv" / "bin" / "python"
