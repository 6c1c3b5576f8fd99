"""The suite's own guards: a clean MASKLITE_* environment, skips that fail under CI, the skip allow-list."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SLOW, TEST_VARIABLES, scrub_environ
from tests.helpers.skips import ALLOWLIST, SkipLog, load_allowlist, parse_allowlist


def test_scrub_keeps_asset_paths_and_drops_server_settings() -> None:
    env = {
        "MASKLITE_API_KEY": "x",
        "MASKLITE_PROTECT_PREDICT": "true",
        "MASKLITE_MAX_INFLIGHT": "1",
        "MASKLITE_BROKER_URL": "redis://nowhere:1",
        "MASKLITE_SCENES_DIR": "/data/scenes",
        "MASKLITE_HARDENING_PROFILE": "long",
        "PATH": "/usr/bin",
    }
    dropped = scrub_environ(env)
    assert dropped == [
        "MASKLITE_API_KEY",
        "MASKLITE_BROKER_URL",
        "MASKLITE_MAX_INFLIGHT",
        "MASKLITE_PROTECT_PREDICT",
    ]
    assert env == {
        "MASKLITE_SCENES_DIR": "/data/scenes",
        "MASKLITE_HARDENING_PROFILE": "long",
        "PATH": "/usr/bin",
    }


def test_this_process_holds_no_server_setting() -> None:
    leaked = [k for k in os.environ if k.startswith("MASKLITE_") and k not in TEST_VARIABLES]
    assert not leaked, leaked


def test_allowlist_entries_need_a_reason() -> None:
    assert parse_allowlist("# header\n\ntests/a.py::t*  # long profile only\n") == parse_allowlist(
        "tests/a.py::t*#long profile only"
    )
    with pytest.raises(ValueError, match="has no `# reason`"):
        parse_allowlist("tests/a.py::t\n")
    with pytest.raises(ValueError, match="has no `# reason`"):
        parse_allowlist("tests/a.py::t   #   \n")


def test_the_committed_allowlist_parses_and_every_entry_names_a_test_file() -> None:
    entries = load_allowlist(ALLOWLIST)
    assert entries
    for entry in entries:
        assert (REPO_ROOT / entry.pattern.split("::")[0]).is_file(), entry


def test_skip_log_flags_skips_off_the_list() -> None:
    log = SkipLog(allowlist=parse_allowlist("tests/x.py::allowed*  # a switch CI leaves off\n"))
    log.skipped += [("tests/x.py::allowed[1]", "profile"), ("tests/x.py::other", "no scenes")]
    assert log.unexpected() == [("tests/x.py::other", "no scenes")]
    text = "\n".join(log.summary(in_ci=True))
    assert "tests/x.py::allowed[1]: profile -- allowed (a switch CI leaves off)" in text
    assert "tests/x.py::other: no scenes -- NOT ALLOWED" in text
    assert "1 skip(s) not on the allow-list: CI fails the run" in text
    assert SkipLog(allowlist=[]).summary(in_ci=True) == []


def _pytest(args: list[str], **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "CI"} | env
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=REPO_ROOT, env=full, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def probe_module(body: str) -> Path:
    """A throw-away test module inside tests/ (so the suite's conftest.py applies to it)."""
    probe = REPO_ROOT / "tests" / f"test_zz_probe_{os.getpid()}.py"
    probe.write_text(body)
    return probe


def test_missing_scenes_fail_under_ci_and_skip_locally(tmp_path) -> None:
    """Removing the shared scenes makes CI fail, not skip (issue 25's definition of done): a test that takes
    the suite's `scenes_dir` fixture, with MASKLITE_SCENES_DIR pointing nowhere."""
    probe = probe_module("def test_needs_scenes(scenes_dir):\n    assert scenes_dir.is_dir()\n")
    test = f"tests/{probe.name}::test_needs_scenes"
    gone = str(tmp_path / "no-scenes")
    try:
        local = _pytest([test], MASKLITE_SCENES_DIR=gone)
        ci = _pytest([test], MASKLITE_SCENES_DIR=gone, CI="true")
    finally:
        probe.unlink()
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout[-2000:]
    assert f"SKIPPED {test}" in local.stdout and "NOT ALLOWED" in local.stdout
    assert ci.returncode == 1, ci.stdout[-2000:]
    assert "CI must run this: MASKLITE_SCENES_DIR=" in ci.stdout


def test_an_unlisted_skip_fails_the_ci_session(tmp_path) -> None:
    """A plain `pytest.skip` (no skip_or_fail) still fails CI: the allow-list hook sees every skip."""
    probe = probe_module("import pytest\n\n\ndef test_quiet():\n    pytest.skip('quietly gone')\n")
    try:
        ci = _pytest([str(probe.relative_to(REPO_ROOT))], CI="true")
    finally:
        probe.unlink()
    assert ci.returncode == 1, ci.stdout[-2000:]
    assert "quietly gone -- NOT ALLOWED" in ci.stdout and "CI fails the run" in ci.stdout


def test_test_modules_do_not_import_each_other() -> None:
    """Shared fixtures and helpers live in a conftest.py or tests/helpers/, never in a test module: importing
    one runs its module-level code and pytest collects its fixtures twice."""
    offenders = []
    for path in sorted((REPO_ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_"):
                    offenders.append(f"{path.relative_to(REPO_ROOT)} imports {name}")
    assert not offenders, offenders


def test_every_slow_entry_names_a_test() -> None:
    """tests/conftest.py's SLOW table: a renamed module or test must not quietly drop out of it."""
    for entry, why in SLOW.items():
        path, _, func = entry.partition("::")
        assert (REPO_ROOT / path).is_file(), entry
        assert not func or f"def {func}(" in (REPO_ROOT / path).read_text(), entry
        assert why, entry
