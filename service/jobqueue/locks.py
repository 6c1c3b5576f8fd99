"""Per-host locks on files (flock): released by the kernel when their holder dies, kill -9 included.

HostJobLock: a benchmark (an `exclusive` kind) runs alone on its host; other jobs share it. The lock folder's
reach defines "host": the jobs volume that every container of one compose deployment mounts, or a
Kubernetes hostPath. Writers go first (a gate file): a stream of short jobs cannot starve a benchmark.

RunnerLock: with the embedded SQLite queue one process per jobs folder runs jobs (several uvicorn workers
share the folder; the others only submit and read).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

POLL_S = 0.25


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def _flock(fd: int, mode: int, give_up: Callable[[], bool]) -> bool:
    """Wait for the lock, polling (a blocking flock could not notice a cancel); False when given up."""
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if give_up():
                return False
            time.sleep(POLL_S)


class HostJobLock:
    def __init__(self, lock_dir: Path):
        self.gate = Path(lock_dir) / "host.gate"
        self.main = Path(lock_dir) / "host.lock"

    @contextlib.contextmanager
    def hold(self, exclusive: bool, give_up: Callable[[], bool]) -> Iterator[bool]:
        """Yields True once held (shared, or exclusive), False when `give_up()` said so while waiting.
        Raises OSError when the lock files cannot be made."""
        gate, main = _open(self.gate), _open(self.main)
        try:
            if not _flock(gate, fcntl.LOCK_EX, give_up):
                yield False
                return
            if not exclusive:  # in through the gate, then let the next one in
                held = _flock(main, fcntl.LOCK_SH, give_up)
                fcntl.flock(gate, fcntl.LOCK_UN)
            else:  # keep the gate: no new job starts here while this one waits and runs
                held = _flock(main, fcntl.LOCK_EX, give_up)
            yield held
        finally:
            os.close(main)  # closing releases
            os.close(gate)


class RunnerLock:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = _open(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
