"""The Docker engine of the deploy tests: `Docker.run` with the engine's environment, and the `docker`
fixture (tests/deploy/conftest.py) that starts $MASKLITE_DOCKER_ENGINE and stops it again if it started it.
test_docker.py and test_scale.py share both, and the runtime image tag."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO_ROOT, skip_or_fail

IMAGE = "masklite:test"


@dataclass
class Docker:
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            list(args), cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}"
                f"\n{result.stderr[-3000:]}"
            )
        return result


def docker_engine() -> Iterator[Docker]:
    """A running engine; stopped again at the end if this test started it."""
    engine = os.environ.get("MASKLITE_DOCKER_ENGINE")
    if not engine:
        skip_or_fail("MASKLITE_DOCKER_ENGINE is unset (path to docker-engine.sh)")
    if not Path(engine).is_file():
        skip_or_fail(f"MASKLITE_DOCKER_ENGINE={engine} does not exist")
    was_up = subprocess.run([engine, "status"], capture_output=True, text=True, timeout=60).returncode == 0
    t0 = time.perf_counter()
    up = subprocess.run([engine, "up"], capture_output=True, text=True, timeout=1200)
    if up.returncode != 0:
        skip_or_fail(f"`{engine} up` failed ({up.returncode}): {up.stderr.strip()[-1500:]}")
    print(f"\nengine up in {time.perf_counter() - t0:.1f} s (was already up: {was_up})")
    shell = f'eval "$({engine} env)"; printf "%s\\n%s" "$DOCKER_HOST" "$PATH"'
    host, path = subprocess.run(
        ["bash", "-c", shell], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split("\n", 1)
    env = dict(os.environ, DOCKER_HOST=host, PATH=path, DOCKER_BUILDKIT="0", COMPOSE_DOCKER_CLI_BUILD="0")
    try:
        yield Docker(env)
    finally:
        if not was_up:
            down = subprocess.run([engine, "down"], capture_output=True, text=True, timeout=300)
            print(f"engine down: {down.stderr.strip().splitlines()[-1:] or down.returncode}")
