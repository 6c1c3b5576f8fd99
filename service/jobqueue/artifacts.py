"""Job artifacts on a folder every replica and worker mounts: <jobs_dir>/<job uuid>/<name>.

Only names a job listed when it finished are served, only plain names (ARTIFACT_NAME), only regular
files: no client string is ever a path.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from service.jobqueue.model import ARTIFACT_NAME


class ArtifactStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def job_dir(self, job_id: str) -> Path:
        return self.root / str(uuid.UUID(job_id))  # a UUID or ValueError: never a client path

    def list(self, job_id: str) -> list[str]:
        try:
            return sorted(
                p.name
                for p in self.job_dir(job_id).iterdir()
                if ARTIFACT_NAME.match(p.name) and p.is_file() and not p.is_symlink()
            )
        except (OSError, ValueError):
            return []

    def path(self, job_id: str, name: str, listed: list[str]) -> Path | None:
        if name not in listed or not ARTIFACT_NAME.match(name):
            return None
        path = self.job_dir(job_id) / name
        return path if path.is_file() and not path.is_symlink() else None

    def delete(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
