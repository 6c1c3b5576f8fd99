"""The import rules of ARCHITECTURE.md hold: import-linter's contracts (.importlinter), which see imports
inside functions too, so a function-local import cannot hide a cycle."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run(
        [str(lint), "--config", str(REPO_ROOT / ".importlinter"), "--no-cache"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    kept = re.search(r"Contracts: (\d+) kept, (\d+) broken", run.stdout)
    assert kept and int(kept.group(1)) >= 7 and kept.group(2) == "0", run.stdout


def test_every_top_level_folder_is_in_the_readme_map() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    listed = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    tracked = listed.stdout.split()
    folders = {p.split("/")[0] for p in tracked if "/" in p and not p.startswith(".")}
    missing = sorted(f for f in folders if f"`{f}/`" not in readme)
    assert not missing, f"README's map of folders lacks: {missing}"
