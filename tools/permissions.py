"""Every route of the fleet with the permission it checks, read from the code.

    uv run python tools/permissions.py [--markdown]

For each deployable's litestar app (built, not started): method, path, operationId, and
what authorizes it: the `action` a route declares (`opt={"action": ...}`, iam and
registry), the `Action.X` its handler passes to its service's authorize call (gpuaas,
billing, audit, terminal-gateway), `operator` where the handler requires an operator, or
`public` where it reads no principal at all, else the `require_*` / `authorize*` calls in
the handler, else "in the use case" (the handler hands the principal to the application
layer, which checks it: terminal-gateway's sessions, audit's tenant reads). The isolation
matrices (tests/e2e, each service's) prove the refusals; this lists the checks for readers.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys

PACKAGES = (
    "iam",
    "billing",
    "gpuaas",
    "terminal_gateway",
    "audit",
    "registry",
    "appplatform",
    "node_agent",
    "gateway",
)
KIT_ROUTES = {"/healthz", "/readyz", "/version", "/metrics"}
ACTION = re.compile(r"\bAction\.([A-Z_]+)")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _permission(handler) -> str:
    declared = (handler.opt or {}).get("action")
    if declared is not None:
        return str(getattr(declared, "value", declared))
    try:
        source = inspect.getsource(handler.fn)
    except (OSError, TypeError):
        source = ""
    actions = sorted(set(ACTION.findall(source)))
    checks = []
    if actions:
        checks.append(" | ".join(f"Action.{a}" for a in actions))
    if "require_operator" in source:
        checks.append("operator")
    if checks:
        return " + ".join(checks)
    if "principal" not in inspect.signature(handler.fn).parameters:
        return "public"
    called = sorted(set(re.findall(r"\b(require_\w+|authorize\w*)\(", source)))
    if called:
        return " + ".join(called)
    return "in the use case (the handler passes the principal on)"


def rows() -> list[tuple[str, str, str, str, str]]:
    out = []
    for package in PACKAGES:
        bootstrap = importlib.import_module(f"{package}.bootstrap")
        app = bootstrap.build_app() if hasattr(bootstrap, "build_app") else None
        if app is None:
            continue
        for route in app.routes:
            if (
                route.path in KIT_ROUTES
                or not route.path.startswith("/v1/")
                or package == "gateway"
            ):
                continue  # the gateway forwards /v1/<route>/ to the services listed here
            for handler in getattr(route, "route_handlers", ()):
                http = getattr(handler, "http_methods", None)
                methods = ["WS"] if http is None else sorted(m for m in http if m in METHODS)
                for method in methods:
                    out.append(
                        (
                            package,
                            method,
                            route.path,
                            handler.operation_id or handler.name or "",
                            _permission(handler),
                        )
                    )
    return out


def main(argv: list[str]) -> int:
    table = rows()
    if "--markdown" in argv:
        print("| service | method | path | operation | permission |")
        print("|---|---|---|---|---|")
        for row in table:
            print("| " + " | ".join(f"`{c}`" if i == 2 else c for i, c in enumerate(row)) + " |")
    else:
        for row in table:
            print("\t".join(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
