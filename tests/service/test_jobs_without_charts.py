"""A job on a server without matplotlib (the Docker image, `make serve`): no PNG, and both the job result
and the 404 for its heatmap say why. A REAL server whose processes (the job process too) cannot import
matplotlib, through a sitecustomize on PYTHONPATH."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx

SMALL = {"layers": [-1], "kinds": ["multiply"], "scalars": [0, 1], "max_images": 20}
BLOCK = 'import sys\nsys.modules["matplotlib"] = None  # `import matplotlib` fails, find_spec finds none\n'


def test_heatmap_404_says_why(server_factory: Any, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    server = server_factory.start(
        {"PYTHONPATH": path, "MASKLITE_JOBS_DIR": str(tmp_path / "jobs")}, wait="/health/live"
    )
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            job_id = c.post("/v1/robustness", json=SMALL).json()["job_id"]
            deadline = time.monotonic() + 300
            job = c.get(f"/v1/jobs/{job_id}").json()
            while job["state"] in ("queued", "running") and time.monotonic() < deadline:
                time.sleep(0.3)
                job = c.get(f"/v1/jobs/{job_id}").json()
            assert job["state"] == "done", job["error"]
            assert set(job["artifacts"]) == {"grid.csv", "grid.json", "ranking.csv"}
            assert "matplotlib" in job["result"]["charts_skipped"]
            r = c.get(f"/v1/jobs/{job_id}/heatmap.png")
            assert r.status_code == 404 and r.json()["error"]["code"] == "artifact_not_found"
            assert "drew no charts" in r.json()["error"]["message"]
            assert "matplotlib" in r.json()["error"]["message"]
    finally:
        server.stop()
