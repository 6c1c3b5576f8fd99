"""Browser-test pieces shared by the camera-page and the docs tests: Debian's Chromium and its flags."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.device import HEADLESS_CHROMIUM_FLAGS
from tests.conftest import skip_or_fail

CHROMIUM = Path(os.environ.get("MASKLITE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [*HEADLESS_CHROMIUM_FLAGS, "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} missing: apt-get install chromium (.ci/run installs it)")
    return CHROMIUM
