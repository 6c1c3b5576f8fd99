"""Deploy-test fixtures: the Docker engine, shared by test_docker.py and test_scale.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.docker import Docker, docker_engine


@pytest.fixture(scope="module")
def docker() -> Iterator[Docker]:
    """A running engine; stopped again at the end if this module started it."""
    yield from docker_engine()
