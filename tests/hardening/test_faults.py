"""Faults at startup and in storage, on REAL servers.

* Corrupt model files (one sha256-consistent but unloadable, one sha256-mismatched): a clear `NOT READY`
  log line naming each, /health/ready false with the reasons, /health/live true, predict 503 + Retry-After,
  and no crash loop (same process, no repeated load attempts).
* Disk full under MASKLITE_JOBS_DIR (a tiny tmpfs, filled up): job submission answers 503
  `jobs_storage_unavailable` naming the cause, predict is unaffected, and submissions work again once
  space is freed.

Elsewhere (not repeated here; listed in RELIABILITY.md): a missing model / missing card and a single
corrupt precision (tests/service/test_service_health.py); a job worker killed mid-job, restart keeps
finished results, unwritable jobs dir (tests/service/test_jobs.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerFactory, skip_or_fail
from tests.hardening.hardening_support import assert_envelope, rss_mb

API_KEY = "faults-key"
SMALL_JOB = {"layers": [-1], "kinds": ["multiply"], "scalars": [1], "max_images": 4}


def settled(url: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = httpx.get(url + "/health/ready", timeout=10).json()
        if body["phase"] not in ("starting", "loading", "warming"):
            return body
        time.sleep(0.1)
    raise AssertionError("loading never finished")


def tiny_jpeg() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 80, 40)).save(buf, "JPEG")
    return buf.getvalue()


def test_corrupt_models_at_startup_no_crash_loop(
    server_factory: ServerFactory, models_dir: Path, tmp_path: Path, record_property: Callable
) -> None:
    broken = tmp_path / "models"
    shutil.copytree(models_dir, broken)
    card_path = broken / "model_card.json"
    card = json.loads(card_path.read_text())
    # int8: garbage whose sha256 the card agrees with -> passes the hash check, fails to load;
    # every other precision (float32, micro, ...): flipped bytes -> sha256 mismatch
    garbage = b"TFL3" + os.urandom(4096)
    (broken / card["models"]["int8"]["file"]).write_bytes(garbage)
    card["models"]["int8"]["sha256"] = hashlib.sha256(garbage).hexdigest()
    card["models"]["int8"]["bytes"] = len(garbage)
    card_path.write_text(json.dumps(card))
    others = [p for p in card["models"] if p != "int8"]
    for precision in others:
        path = broken / card["models"][precision]["file"]
        data = bytearray(path.read_bytes())
        data[100:200] = bytes(b ^ 0xFF for b in data[100:200])
        path.write_bytes(bytes(data))

    handle = server_factory.start({"MASKLITE_MODELS_DIR": str(broken)}, wait="/health/live")
    try:
        pid = handle.proc.pid
        body = settled(handle.url)
        assert body["ready"] is False and body["phase"] == "failed", body
        assert not any(m["loaded"] for m in body["models"].values()), body
        assert body["models"]["int8"]["error"], body
        for precision in others:
            assert "sha256" in body["models"][precision]["error"], body
        r = httpx.get(handle.url + "/health/ready")
        assert r.status_code == 503 and int(r.headers["retry-after"]) > 0
        assert httpx.get(handle.url + "/health/live").status_code == 200
        with httpx.Client(base_url=handle.url, timeout=30) as c:
            for model in card["models"]:
                p = c.post("/v1/predict", params={"model": model}, files={"file": ("x.jpg", tiny_jpeg())})
                assert_envelope(p, 503, "not_ready")
        logs = handle.logs()
        lines = [ln for ln in logs.splitlines() if "NOT READY" in ln or "unusable" in ln]
        assert any("int8" in ln for ln in lines), logs
        for precision in others:
            assert any(precision in ln and "sha256" in ln for ln in lines), (precision, logs)
        # no crash loop: the same process, no new load attempt, a few seconds later
        count = logs.count("NOT READY")
        time.sleep(3)
        assert handle.alive() and handle.proc.pid == pid
        assert handle.logs().count("NOT READY") == count
        assert "Traceback" not in handle.logs()
        record_property("cases", len(card["models"]))
        record_property("detail", "; ".join(ln.split("] ", 1)[-1][:140] for ln in lines[:3]))
    finally:
        handle.stop()
    assert handle.proc.returncode in (0, -15), handle.proc.returncode  # a clean stop, not a crash


# ---------------------------------------------------------------- disk full


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A 512 kB tmpfs with a jobs folder, filled to the last byte. Skips where mounting is not allowed."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0777", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        skip_or_fail(f"cannot mount a small tmpfs to fill (needs root / CAP_SYS_ADMIN): {res.stderr.strip()}")
    try:
        (mnt / "jobs").mkdir()
        filler = mnt / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass  # ENOSPC: full
        finally:
            os.close(fd)
        yield mnt / "jobs", filler
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_for_job_results(
    server_factory: ServerFactory, full_disk: tuple[Path, Path], record_property: Callable
) -> None:
    jobs_dir, filler = full_disk
    handle = server_factory.start({"MASKLITE_JOBS_DIR": str(jobs_dir), "MASKLITE_JOB_NICE": "19"})
    try:
        with httpx.Client(base_url=handle.url, timeout=60) as c:
            tried = 0
            for _ in range(3):  # keeps refusing, keeps serving
                err = assert_envelope(
                    c.post("/v1/robustness", json=SMALL_JOB), 503, "jobs_storage_unavailable"
                )
                # the first write to fail names it: the write probe (ENOSPC) or the job queue's SQLite file
                full = "No space left" in err["message"] or "disk is full" in err["message"]
                assert full and "MASKLITE_JOBS_DIR" in err["message"], err
                pred = c.post("/v1/predict", files={"file": ("x.jpg", tiny_jpeg(), "image/jpeg")})
                assert pred.status_code == 200, pred.text
                tried += 1
            assert c.get("/health/ready").status_code == 200  # predict readiness is not about job storage
            # job folders only: the runner's dot-files (lock, write probe) and the embedded queue's SQLite
            # files are not results
            left = [p.name for p in jobs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
            assert not left, f"a half-written job was left behind: {left}"
            logs = handle.logs()
            assert "No space left" in logs or "disk is full" in logs
            # space back: submissions work again without a restart
            filler.unlink()
            ok = c.post("/v1/robustness", json=SMALL_JOB)
            assert ok.status_code == 202, ok.text
            c.delete(f"/v1/jobs/{ok.json()['job_id']}")
            record_property("cases", tried + 1)
            record_property(
                "detail", f"refused with: {err['message'][:120]}; RSS {rss_mb(handle.proc.pid):.0f} MB"
            )
    finally:
        handle.stop()
