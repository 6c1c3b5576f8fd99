"""Print the pinned requirements of a lock file (requirements/*.txt) that this interpreter lacks.

    python docker/requirements.py requirements/dev.txt [--missing]

`make serve` / `make test` use `--missing` to install only what the venv lacks, at the locked version (a
second run installs nothing). Only the standard library plus `packaging` (pip's vendored copy in a bare
venv): it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
from pathlib import Path
from typing import Any


def locked(lock: Path) -> list[str]:
    """The `name==version ; marker` lines of a lock file written by `uv pip compile` (comments dropped)."""
    lines = (line.split("#", 1)[0].strip() for line in lock.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def _requirement_class() -> Any:
    try:
        from packaging.requirements import Requirement
    except ImportError:  # a fresh venv has only pip, which vendors packaging
        from pip._vendor.packaging.requirements import Requirement
    return Requirement


def missing(reqs: list[str]) -> list[str]:
    """The requirements this interpreter does not satisfy: absent, or another version than the pin."""
    requirement = _requirement_class()
    out = []
    for text in reqs:
        req = requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue  # not meant for this platform
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            out.append(text)
            continue
        if not req.specifier.contains(version, prereleases=True):
            out.append(text)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path)
    parser.add_argument("--missing", action="store_true", help="only those this interpreter lacks")
    args = parser.parse_args()
    reqs = locked(args.lock)
    print("\n".join(missing(reqs) if args.missing else reqs))


if __name__ == "__main__":
    main()
