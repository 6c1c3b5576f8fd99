"""masklite.client against real servers: typed predict/snapshot results, and retries that honour the
service's Retry-After when the job queue is full."""

from __future__ import annotations

import pytest

from bench.rtsp import RtspServer
from masklite.client import Client, MaskliteError, PredictResult
from service.jobqueue.queue import RETRY_AFTER_S
from tests.conftest import SceneSample, ServerFactory
from tests.video.conftest import Clips


def test_predict_and_snapshot_give_the_same_typed_faces(
    live_server: str, scene_samples: list[SceneSample]
) -> None:
    sample = max(scene_samples[:6], key=lambda s: len(s.faces))
    with Client(live_server) as ml:
        by_path = ml.predict(sample.path)
        by_bytes = ml.predict(sample.data, model="int8")
        snapshot = ml.snapshot(sample.data)
    assert isinstance(by_path, PredictResult) and (by_path.width, by_path.height) == (
        sample.width,
        sample.height,
    )
    assert len(by_path.faces) >= 1 and by_path.request_id
    for result in (by_bytes, snapshot):
        assert [(f.box, f.label) for f in result.faces] == [(f.box, f.label) for f in by_path.faces]
    assert all(
        0.0 <= f.mask_probability <= 1.0 and f.label in ("with_mask", "without_mask", "unknown")
        for f in by_path.faces
    )


def test_errors_carry_the_service_code(live_server: str) -> None:
    with Client(live_server) as ml, pytest.raises(MaskliteError) as err:
        ml.predict(b"not an image")
    assert err.value.status == 415 and err.value.code and err.value.request_id


def test_a_full_queue_is_retried_after_retry_after(server_factory: ServerFactory, clips: Clips) -> None:
    server = server_factory.start(
        {"MASKLITE_JOB_QUEUE": "0", "MASKLITE_MAX_JOBS": "1", "MASKLITE_STREAM_URLS": "127.0.0.1"}
    )
    with RtspServer(clips.files["mp4"], fps=clips.fps) as rtsp, Client(server.url, retries=2) as ml:
        waits: list[float] = []
        ml.sleep = waits.append  # count the waits instead of sleeping them
        blocker = ml.video(url=rtsp.url, duration_s=120)  # holds the one job slot
        try:
            with pytest.raises(MaskliteError) as err:
                ml.video(clips.files["mp4"])
            assert err.value.status == 429 and err.value.code == "job_queue_full"
            assert waits == [float(RETRY_AFTER_S)] * 2  # the service's Retry-After, twice, then it gives up
        finally:
            ml.cancel(blocker)
