"""Which versions pip chose for the declared ranges, beside the lock's: run with the Python of
a fresh resolve of `pip install -e '.[dev]'` (CI's .venv-latest).

    .venv-latest/bin/python scripts/fresh_resolve.py                  # print what differs
    .venv-latest/bin/python scripts/fresh_resolve.py --out benchmarks/results/fresh_resolve.json

Lists every package named in pyproject.toml's dependencies and extras (what the ranges
govern); dependencies of dependencies are pip's business and are left out.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    """'ray[serve]>=2.40' -> 'ray'; names compared lower-case with '_' as '-'."""
    return re.split(r"[\[<>=!~; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def declared() -> dict[str, str]:
    """name -> the declared requirement, over dependencies and every extra (genforge's own
    extras, e.g. genforge[serve], left out)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    found = {}
    for requirement in [*project["dependencies"],
                        *(r for extra in project["optional-dependencies"].values() for r in extra)]:
        if _name(requirement) != "genforge":
            found.setdefault(_name(requirement), requirement)
    return found


def locked() -> dict[str, str]:
    found = {}
    for line in (REPO / "requirements-lock.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, pinned = line.split("==", 1)
            found[_name(name)] = pinned.strip()
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the JSON record here")
    parser.add_argument("--suite", help="what the test suite gave on this resolve, to record")
    args = parser.parse_args()
    lock = locked()
    packages = {}
    for name, requirement in sorted(declared().items()):
        try:
            chosen = version(name)
        except PackageNotFoundError:
            chosen = None
        packages[name] = {"declared": requirement, "chosen": chosen, "lock": lock.get(name)}
    # a local build label (torch's +cpu) is the same release as the lock's
    differ = {n: p for n, p in packages.items()
              if (p["chosen"] or "").split("+")[0] != (p["lock"] or "")}
    for name, p in differ.items():
        print(f"fresh resolve: {name} {p['chosen']} (lock {p['lock']})")
    print(f"fresh resolve: {len(packages) - len(differ)} of {len(packages)} declared packages "
          "at the lock's version")
    if args.out:
        record = {
            "what": "versions pip chose for pyproject.toml's ranges in a fresh venv, beside "
                    "requirements-lock.txt",
            "command": "python3 -m venv .venv-latest && .venv-latest/bin/pip install "
                       "-c constraints.txt -e '.[dev]' && .venv-latest/bin/python "
                       "scripts/fresh_resolve.py --out benchmarks/results/fresh_resolve.json",
            "date": time.strftime("%Y-%m-%d"), "python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}",
            "packages": packages,
            "differ_from_lock": sorted(differ),
        }
        if args.suite:
            record["suite"] = args.suite
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
