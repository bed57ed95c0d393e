"""Headless Chromium for the portal's browser tests and benchmark: Debian's `chromium`
package driven by Playwright (browsers are never downloaded here)."""

from __future__ import annotations

import os
import shutil
from typing import Any

CHROMIUM = os.environ.get("GPUCLOUD_CHROMIUM", "/usr/bin/chromium")
ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def launch(playwright: Any) -> Any:
    """A Chromium browser of `playwright` (sync or async API alike)."""
    if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        raise RuntimeError(
            f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` (.ci/run installs it)"
        )
    return playwright.chromium.launch(executable_path=CHROMIUM, args=list(ARGS))
