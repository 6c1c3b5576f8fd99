#!/usr/bin/env bash
# Regenerates the lock files from pyproject.toml (`make lock`). Every install (make serve, make test, CI,
# both Docker images) takes exactly these pins, so a fresh machine installs what CI tested.
# dev.txt resolves everything together; the others are constrained to it, so a package has one version.
set -euo pipefail
cd "$(dirname "$0")/.."
uv="${UV:-.venv/bin/uv}"
common=(--python-version 3.11 --python-platform x86_64-manylinux_2_28 --quiet --no-header -c requirements/constraints.txt)
"$uv" pip compile pyproject.toml "${common[@]}" --all-extras -o requirements/dev.txt
"$uv" pip compile pyproject.toml "${common[@]}" --extra scale -c requirements/dev.txt -o requirements/serve.txt
"$uv" pip compile pyproject.toml "${common[@]}" --extra train -c requirements/dev.txt -o requirements/train.txt
