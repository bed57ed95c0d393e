"""Write contracts/app-manifest.schema.json from the manifest's structs, or check it.

    uv run python tools/contracts/app_manifest_schema.py           # write it
    uv run python tools/contracts/app_manifest_schema.py --check   # exit 1 when it drifted

The structs (libs/manifest/src/gpucloud_manifest/__init__.py) are the source; the file
is what publishers' editors and other tools read. libs/manifest/tests/test_manifest.py
fails when the two disagree.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gpucloud_manifest import json_schema

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "contracts" / "app-manifest.schema.json"


def render() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} drifted: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
