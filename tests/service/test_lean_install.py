"""The serving install has no matplotlib (extra `charts`) and no TensorFlow: the whole app must import and
report charts as unavailable without them (the Docker image and `make serve` rely on it)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

# a None entry in sys.modules makes `import x` raise ImportError and find_spec(x) report it absent
PROBE = """
import sys
for name in ("matplotlib", "tensorflow", "keras"):
    sys.modules[name] = None
from masklite import charts_available
from service.app import create_app
import bench.jobs  # the benchmark job draws its chart only when it can
create_app()
assert not charts_available()
print("ok")
"""


def test_app_imports_without_matplotlib_or_tensorflow() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr
