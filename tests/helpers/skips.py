"""The skips of one pytest session, checked against tests/skip_allowlist.txt.

Under CI=true a missing asset fails (`skip_or_fail`), so a skip left in CI is either a switch that CI does
not turn on (the long hardening profile...) or a regression: a test that quietly stopped running. The
allow-list names the first kind, one glob on the test id per line, each with the reason after `#`; any
other skip fails the CI run (tests/conftest.py's pytest_sessionfinish).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ALLOWLIST = Path(__file__).resolve().parent.parent / "skip_allowlist.txt"


@dataclass(frozen=True)
class Allowed:
    pattern: str
    why: str


def parse_allowlist(text: str) -> list[Allowed]:
    """`<glob on the test id>  # why` per line; blank and whole-comment lines are ignored. An entry
    without a reason is an error: the list is the place where a skip in CI is justified."""
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern, sep, why = line.partition("#")
        if not sep or not why.strip():
            raise ValueError(f"skip_allowlist.txt:{number}: {pattern.strip()!r} has no `# reason`")
        entries.append(Allowed(pattern.strip(), why.strip()))
    return entries


def load_allowlist(path: Path = ALLOWLIST) -> list[Allowed]:
    return parse_allowlist(path.read_text()) if path.is_file() else []


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@dataclass
class SkipLog:
    """Collects (test id, reason) of every skip; xfails are not skips."""

    allowlist: list[Allowed] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def record(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skipped.append((report.nodeid, skip_reason(report)))

    def allowed_by(self, nodeid: str) -> Allowed | None:
        if self.allowlist is None:
            self.allowlist = load_allowlist()
        return next((a for a in self.allowlist if fnmatch.fnmatchcase(nodeid, a.pattern)), None)

    def unexpected(self) -> list[tuple[str, str]]:
        return [(nodeid, reason) for nodeid, reason in self.skipped if self.allowed_by(nodeid) is None]

    def summary(self, in_ci: bool) -> list[str]:
        if not self.skipped:
            return []
        lines = [f"==== {len(self.skipped)} skipped test(s), checked against tests/skip_allowlist.txt ===="]
        for nodeid, reason in self.skipped:
            allowed = self.allowed_by(nodeid)
            tag = f"allowed ({allowed.why})" if allowed else "NOT ALLOWED"
            lines.append(f"SKIPPED {nodeid}: {reason} -- {tag}")
        bad = len(self.unexpected())
        if bad:
            verdict = "CI fails the run" if in_ci else "CI (CI=true) would fail the run"
            lines.append(f"{bad} skip(s) not on the allow-list: {verdict}")
        return lines
