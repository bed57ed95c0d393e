"""httpx, imported without its own command line.

`import httpx` also imports `httpx._main` (httpx's CLI), which, when click and rich are
installed (they are: this is a click/rich program), pulls in click, rich.console,
rich.progress, rich.syntax and pygments: about 40% of httpx's import time, for a feature
never used here. Registering an empty `httpx._main` first skips it; `httpx.main` then
raises instead of starting httpx's CLI. Measured by `just bench cli` (gpucloud ps --json).
"""

import sys
import types

if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
    _stub = types.ModuleType("httpx._main")

    def _no_cli() -> None:
        raise RuntimeError("httpx's command line is not loaded inside gpucloud")

    _stub.main = _no_cli  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = _stub

import httpx

__all__ = ["httpx"]
