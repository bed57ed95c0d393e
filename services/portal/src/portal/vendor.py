"""The portal's vendored front-end assets: npm packages unpacked into static/vendor/ and
committed (minified files and their licenses), so a fresh machine serves the console with no
build step and no CDN.

    uv run python -m portal.vendor update   # npm pack PACKAGES, copy FILES, rewrite the manifest
    uv run python -m portal.vendor check    # every file present, unchanged, and listed

static/vendor/manifest.json records each package's version, npm integrity and the sha256
of every copied file; `check` (run by the portal's unit tests) fails on any difference, on
a missing file, and on a file in static/vendor/ that the manifest does not list.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

VENDOR = Path(__file__).parent / "static" / "vendor"
MANIFEST = VENDOR / "manifest.json"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    folder: str  # under static/vendor/
    files: tuple[str, ...]  # paths inside the npm tarball's package/ folder


PACKAGES = (
    Package("htmx.org", "2.0.11", "htmx", ("dist/htmx.min.js", "LICENSE")),
    # The browser terminal on the allocation page (static/terminal.js loads them).
    Package("@xterm/xterm", "6.0.0", "xterm", ("lib/xterm.js", "css/xterm.css", "LICENSE")),
    Package("@xterm/addon-fit", "0.11.0", "xterm-addon-fit", ("lib/addon-fit.js", "LICENSE")),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def update() -> dict:
    manifest: dict = {"packages": []}
    with tempfile.TemporaryDirectory() as tmp:
        for package in PACKAGES:
            spec = f"{package.name}@{package.version}"
            out = subprocess.run(
                ["npm", "pack", spec, "--json", "--pack-destination", tmp],
                capture_output=True,
                text=True,
                check=True,
            )
            (packed,) = json.loads(out.stdout)
            target = VENDOR / package.folder
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            with tarfile.open(Path(tmp) / packed["filename"]) as tar:
                files = {}
                for name in package.files:
                    member = tar.extractfile(f"package/{name}")
                    if member is None:
                        raise SystemExit(f"{spec}: no {name} in the tarball")
                    dest = target / Path(name).name
                    dest.write_bytes(member.read())
                    files[f"{package.folder}/{dest.name}"] = sha256(dest)
            manifest["packages"].append(
                {
                    "name": package.name,
                    "version": package.version,
                    "integrity": packed["integrity"],
                    "files": files,
                }
            )
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def check() -> list[str]:
    """What is wrong with static/vendor/ against its manifest (nothing: an empty list)."""
    try:
        manifest = json.loads(MANIFEST.read_text())
    except FileNotFoundError:
        return [f"{MANIFEST} is missing: run `python -m portal.vendor update`"]
    problems = []
    declared = {(p.name, p.version) for p in PACKAGES}
    recorded = {(p["name"], p["version"]) for p in manifest["packages"]}
    if declared != recorded:
        problems.append(f"manifest lists {sorted(recorded)}, vendor.py pins {sorted(declared)}")
    listed: set[str] = set()
    for package in manifest["packages"]:
        for relative, digest in package["files"].items():
            listed.add(relative)
            path = VENDOR / relative
            if not path.is_file():
                problems.append(f"{relative} ({package['name']}) is missing")
            elif sha256(path) != digest:
                problems.append(f"{relative} ({package['name']}) differs from its sha256 {digest}")
        if not any(name.endswith("LICENSE") for name in package["files"]):
            problems.append(f"{package['name']}: no LICENSE vendored")
    present = {
        str(p.relative_to(VENDOR)) for p in VENDOR.rglob("*") if p.is_file() and p != MANIFEST
    }
    problems += [f"{extra} is not in the manifest" for extra in sorted(present - listed)]
    return problems


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    if command == "update":
        for package in update()["packages"]:
            print(f"{package['name']}@{package['version']}: {', '.join(package['files'])}")
        return 0
    problems = check()
    for problem in problems:
        print(f"portal vendor: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
