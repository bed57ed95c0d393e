"""Does every pod of a rendered chart get every setting its service requires in production?

    uv run python deploy/required_settings.py RENDERED.yaml [...]   (each file one render)

Each serving pod runs `python -m <package>`; what that package requires is what it declares
in code, the list it refuses to start without when GPUCLOUD_ENVIRONMENT=production
(`platformkit.settings.production_requirements` of its ServiceDefinition, or the portal's
PRODUCTION_SETTINGS). A migration Job needs the owner's login and the runtime role it grants
to. A setting counts when the container's env names it (a value, or a Secret reference) or a
ConfigMap it reads holds a non-empty value for it. `just deploy-check` runs this on the
production render: a chart missing any required setting fails CI, naming the pod and the
settings. Exit 1 lists every gap.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

MIGRATION = ("GPUCLOUD_DATABASE_OWNER_URL", "GPUCLOUD_DATABASE_RUNTIME_ROLE")
WORKLOADS = {"Deployment", "DaemonSet", "Job"}


def requirements(package: str) -> tuple[str, ...]:
    """What `python -m <package>` needs in production, from its own declaration."""
    from platformkit.settings import production_requirements

    bootstrap = importlib.import_module(f"{package}.bootstrap")
    definition = getattr(bootstrap, "DEFINITION", None)
    if definition is not None:
        return ("GPUCLOUD_ENVIRONMENT", *production_requirements(definition))
    settings = importlib.import_module(f"{package}.settings")
    return ("GPUCLOUD_ENVIRONMENT", *settings.PRODUCTION_SETTINGS)


def _documents(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict):
                yield document


REFERENCE = "<from a Secret or the downward API>"


def _settings(container: dict[str, Any], configmaps: dict[str, dict[str, str]]) -> dict[str, str]:
    """Each setting the container gets -> its value as text ("" when empty; REFERENCE for a
    Secret or field reference). The container's env wins over its ConfigMaps, as in a pod."""
    settings: dict[str, str] = {}
    for source in container.get("envFrom", ()):
        name = (source.get("configMapRef") or {}).get("name")
        for key, value in configmaps.get(name, {}).items():
            settings[key] = str(value)
    for entry in container.get("env", ()):
        settings[entry["name"]] = (
            REFERENCE if entry.get("valueFrom") else str(entry.get("value", ""))
        )
    return settings


def gaps(documents: list[dict[str, Any]]) -> list[str]:
    configmaps = {
        d["metadata"]["name"]: d.get("data") or {}
        for d in documents
        if d.get("kind") == "ConfigMap"
    }
    problems: list[str] = []
    checked = 0
    for document in documents:
        if document.get("kind") not in WORKLOADS:
            continue
        pod = document["spec"]["template"]["spec"]
        for container in pod["containers"]:
            command = container.get("command", [])
            if command[:2] != ["python", "-m"] or len(command) < 3:
                continue
            package, args = command[2], container.get("args", [])
            if document["kind"] == "Job":
                if args[:1] != ["migrate"]:
                    continue  # the topic provisioning Job: the Kafka admin's own settings
                required: tuple[str, ...] = MIGRATION
            else:
                required = requirements(package)
            given = _settings(container, configmaps)
            missing = [name for name in required if not given.get(name)]
            checked += 1
            if missing:
                where = f"{document['kind']} {document['metadata']['name']}"
                problems.append(f"{where} ({package}) lacks {', '.join(missing)}")
            if document["kind"] != "Job" and given.get("GPUCLOUD_ENVIRONMENT"):
                environment = given["GPUCLOUD_ENVIRONMENT"]
                if environment != "production":
                    problems.append(
                        f"{document['kind']} {document['metadata']['name']}: "
                        f"GPUCLOUD_ENVIRONMENT={environment!r}, not production"
                    )
    if not checked:
        problems.append("no pod running `python -m <package>` in the rendered chart")
    return problems


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    failed = False
    for path in map(Path, argv):  # each file one render (their ConfigMaps share names)
        documents = list(_documents([path]))
        problems = gaps(documents)
        for problem in problems:
            print(f"{path.name}: required settings: {problem}", file=sys.stderr)
        failed = failed or bool(problems)
        if not problems:
            pods = sum(1 for d in documents if d.get("kind") in WORKLOADS)
            print(f"{path.name}: every one of {pods} workloads gets all its service requires")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
