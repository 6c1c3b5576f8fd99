"""Print a requirements list from pyproject.toml, so installs take exactly the declared dependencies.

    python docker/requirements.py pyproject.toml [--extra train] [--missing]

The Docker build uses it to install the base dependencies; `make serve` / `make test` use `--missing` to
install only what the current interpreter lacks (a second run installs nothing). Only the standard
library (tomllib) plus, for `--missing`, `packaging` (pip's vendored copy in a bare venv): it runs before
anything is installed.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import tomllib
from pathlib import Path
from typing import Any


def requirement_name(req: str) -> str:
    return re.split(r"[<>=!~\[;@ ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return reqs


def _requirement_class() -> Any:
    try:
        from packaging.requirements import Requirement
    except ImportError:  # a fresh venv has only pip, which vendors packaging
        from pip._vendor.packaging.requirements import Requirement
    return Requirement


def _satisfied(text: str, requirement: Any, extra: str = "") -> bool:
    req = requirement(text)
    if req.marker is not None and not req.marker.evaluate({"extra": extra}):
        return True  # not meant for this platform / extra
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        return False
    if req.specifier and not req.specifier.contains(version, prereleases=True):
        return False
    # uvicorn[standard]: the extra's own requirements must be there too
    subs = metadata.requires(req.name) or []
    return all(_satisfied(sub, requirement, extra=x) for x in req.extras for sub in subs if "extra" in sub)


def missing(reqs: list[str]) -> list[str]:
    """The requirements this interpreter does not satisfy (absent, or a version outside the range)."""
    requirement = _requirement_class()
    return [r for r in reqs if not _satisfied(r, requirement)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path)
    parser.add_argument("--extra", action="append", default=[], help="also an optional-dependencies group")
    parser.add_argument("--missing", action="store_true", help="only those this interpreter lacks")
    args = parser.parse_args()
    reqs = requirements(args.pyproject, args.extra)
    print("\n".join(missing(reqs) if args.missing else reqs))


if __name__ == "__main__":
    main()
