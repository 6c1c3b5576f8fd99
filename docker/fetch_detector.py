"""Put the YuNet face detector into the image, sha256-checked, at build time.

Order: a copy in the build context (docker/assets/<file>, for air-gapped builds) wins; otherwise the file
is downloaded from --url (default: the official opencv_zoo URL in masklite.paths). Either way the bytes
must match the sha256 pinned in masklite.paths, or the build fails.

Run by the Dockerfile as `python docker/fetch_detector.py --assets DIR --dest FILE [--url URL]`;
only the standard library and masklite/paths.py are needed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # masklite.paths, without installing
from masklite.paths import YUNET_FILENAME, YUNET_SHA256, YUNET_URL, download_detector, sha256_file  # noqa: E402

AIR_GAP_HINT = (
    f"for an offline build put {YUNET_FILENAME} (sha256 {YUNET_SHA256}) in docker/assets/, "
    "or pass --build-arg YUNET_URL=<a mirror you can reach>"
)


def fetch(assets: Path, dest: Path, url: str, timeout: float) -> str:
    local = assets / YUNET_FILENAME
    if not local.is_file():
        try:
            download_detector(dest, url, timeout)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"cannot download the face detector from {url}: {exc}\n{AIR_GAP_HINT}") from exc
        return url
    actual = sha256_file(local)
    if actual != YUNET_SHA256:
        raise SystemExit(f"face detector {local} has sha256 {actual}, expected {YUNET_SHA256}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local, dest)
    return f"build context ({local})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=Path, required=True, help="folder that may hold the detector")
    parser.add_argument("--dest", type=Path, required=True, help="where the checked file goes")
    parser.add_argument("--url", default="", help=f"download URL when no local copy (default {YUNET_URL})")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    source = fetch(args.assets, args.dest, args.url or YUNET_URL, args.timeout)
    print(f"face detector {args.dest} from {source}: sha256 ok")


if __name__ == "__main__":
    main()
