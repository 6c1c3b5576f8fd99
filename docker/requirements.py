"""Print a requirements list from pyproject.toml, so the image installs exactly the declared dependencies.

    python docker/requirements.py pyproject.toml [--extra train]

Only the standard library (tomllib): it runs in the bare base image before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path


def requirement_name(req: str) -> str:
    return re.split(r"[<>=!~\[;@ ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return reqs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path)
    parser.add_argument("--extra", action="append", default=[], help="also an optional-dependencies group")
    args = parser.parse_args()
    print("\n".join(requirements(args.pyproject, args.extra)))


if __name__ == "__main__":
    main()
