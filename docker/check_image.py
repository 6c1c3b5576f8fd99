"""Build-time check of the runtime image: load everything exactly as the service does, then exit.

Run by the Dockerfile's runtime stage (and usable in a running container: `python docker/check_image.py`):
imports the whole app (every router and its dependencies), then loads the model card, checks each model's
sha256, loads every model and the detector and warms them up. A broken or missing library, model or
detector fails the build instead of the first request.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the app root (/app), as `python -m` has it
from service.app import create_app  # noqa: E402
from service.runtime import Runtime  # noqa: E402
from service.settings import Settings  # noqa: E402


def main() -> int:
    settings = Settings(threads=1, warmup_runs=1)
    create_app(settings)  # imports every router; a missing dependency raises here
    runtime = Runtime(settings)
    runtime.load()
    runtime.close()
    if not runtime.ready or not runtime.detector.available:
        print(f"image check FAILED: {runtime.reasons() or runtime.detector.error}", file=sys.stderr)
        return 1
    print(f"image check: models {runtime.loaded_precisions()}, detector {runtime.detector.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
