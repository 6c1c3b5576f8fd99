"""Count the project files whose functions run for one POST /v1/predict (after warm-up).

    python tools/request_path.py IMAGE [--runs 1] [--timeout 120]

Starts the app in-process (FastAPI's TestClient, the shipped models), waits until it is ready, sends one
request to warm every lazy path, then profiles the next one(s) with `sys.setprofile` on the threads that
serve it (the event loop and the inference threads; not the client, not background loops such as the job
runner's) and prints the number of project files that ran, then the files. ARCHITECTURE.md's target is at
most 8. The service is imported from this checkout, not from wherever an editable install points.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_PARTS = {".venv", "site-packages"}
INFERENCE_THREADS = "masklite-infer"  # service/runtime.py's thread_name_prefix


class FileRecorder:
    """A profile hook that records the project files whose Python functions are called while `on`, on the
    threads that serve requests: the event loop (`serving`, noted by `asgi`) and the inference pool."""

    def __init__(self, root: Path):
        self.root = str(root) + "/"
        self.on = False
        self.files: set[str] = set()
        self.serving: set[int] = set()

    def asgi(self, app: Any) -> Any:
        """`app`, noting the thread its event loop runs on."""

        async def traced(scope: Any, receive: Any, send: Any) -> None:
            self.serving.add(threading.get_ident())
            await app(scope, receive, send)

        return traced

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if not self.on or event != "call":
            return
        if threading.get_ident() not in self.serving and not threading.current_thread().name.startswith(
            INFERENCE_THREADS
        ):
            return
        name = frame.f_code.co_filename
        if name.startswith(self.root) and name != __file__ and not VENV_PARTS & set(Path(name).parts):
            self.files.add(name[len(self.root) :])


def request_path(image: bytes, runs: int = 1, timeout_s: float = 120.0) -> list[str]:
    """The project files (relative to the repository) that run for `runs` POST /v1/predict of `image`."""
    sys.path.insert(0, str(ROOT))  # this checkout's service, not an editable install's
    from fastapi.testclient import TestClient

    from service.app import create_app

    recorder = FileRecorder(ROOT)
    # before the app starts: threads started later (inference pool, the client's loop) inherit the hook
    sys.setprofile(recorder)
    threading.setprofile(recorder)
    try:
        with TestClient(recorder.asgi(create_app())) as client:
            deadline = time.monotonic() + timeout_s
            while client.get("/health/ready").status_code != 200:
                if time.monotonic() > deadline:
                    raise SystemExit(f"service not ready after {timeout_s:.0f} s")
                time.sleep(0.2)
            files = {"file": ("image.jpg", image, "image/jpeg")}
            warm = client.post("/v1/predict", files=files)
            if warm.status_code != 200:
                raise SystemExit(f"/v1/predict answered {warm.status_code}: {warm.text[:300]}")
            recorder.on = True
            answers = [client.post("/v1/predict", files=files).status_code for _ in range(runs)]
            recorder.on = False
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    if any(status != 200 for status in answers):
        raise SystemExit(f"/v1/predict answered {answers}")
    return sorted(recorder.files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/request_path.py", description=__doc__.splitlines()[0])
    ap.add_argument("image", type=Path, help="a JPEG or PNG to send")
    ap.add_argument("--runs", type=int, default=1, help="profiled requests (after one warm-up request)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for /health/ready")
    args = ap.parse_args(argv)
    files = request_path(args.image.read_bytes(), args.runs, args.timeout)
    print(len(files))
    print("\n".join(files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
