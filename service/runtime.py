"""The inference runtime: model card, sha256 checks, a fixed pool of inference threads, admission control.

LiteRT interpreters and OpenCV's YuNet are not thread-safe, so every pool thread owns one classifier per
precision plus one detector (thread-local, built on first use and during warm-up). Decoding and inference
run on those threads, never on the event loop. At most `max_inflight` requests are admitted at once
(running or waiting for a thread); the next one is refused at once with 503 + Retry-After, so the queue
cannot grow under overload.

A request that is alone in flight runs on one more detector and one more classifier of the default
precision, built with `solo_threads` LiteRT threads: on an idle server the other cores would sit unused,
so a lone request takes them (the 640x480 target: detector 8.2 -> 5.2 ms wall for 9.8 ms of CPU). Other
precisions classify on their thread's own interpreter (a float32 interpreter costs ~20 MB). As soon as
two requests are in flight each runs on its own thread's 1-thread interpreters, which is the cheaper way
to spend the CPU under load.

Loading never raises: a missing card, a missing/corrupt/sha-mismatched model or a missing/corrupt
detector is logged, recorded, and reported by /health/ready (not ready, with the reason); the process
keeps serving /health/live. Reasons on those unauthenticated routes name files, never server paths.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from fastapi import Request

from masklite.card import ChecksumError, DetectorSpec, ModelCard, load_card, read_model_file
from masklite.classifier import Classifier
from masklite.faces import YuNet, load_detector
from masklite.pipeline import ImageResult, Models, PredictOptions, predict_frame, predict_image
from service import telemetry
from service.errors import ApiError
from service.settings import Settings

log = logging.getLogger("masklite.runtime")

WARMUP_SHAPE = (480, 640, 3)

# the directory part of an absolute path (POSIX or Windows): "/srv/app/models/x.onnx" -> "x.onnx"
_DIRS = re.compile(r"(?:[A-Za-z]:)?(?:[/\\][^/\\\s'\":,;()\[\]]+)+[/\\]")


# glibc's mallopt parameter (malloc.h) and our value
M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def tame_malloc() -> bool:
    """At most MALLOC_ARENAS glibc malloc arenas (glibc gives each new thread its own, up to 8 per core,
    and freed frame buffers stay resident in each): ~7 MB less resident per worker under load, no CPU
    cost measured. (A fixed 1 MB mmap threshold saved a few MB more but cost ~4 ms of CPU per request:
    page faults on every frame.) Call before the inference threads start. False where libc is not glibc."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, MALLOC_ARENAS))
    except (OSError, AttributeError):
        return False


def load_served_detector(settings: Settings, spec: DetectorSpec) -> YuNet:
    """The detector as the settings serve it (`python -m service check` loads it the same way)."""
    options = {"runtime": settings.detector_runtime, "path": settings.detector_path}
    options |= {"max_side": settings.detect_max_side, "accept_other": settings.detector_optional}
    return load_detector(spec, settings.models_dir, **options)


def redact_paths(text: str) -> str:
    """A reason fit for unauthenticated routes: file names stay, the server's directories go."""
    return _DIRS.sub("", text)


@dataclass
class ModelState:
    precision: str
    path: Path | None = None
    # the verified file's bytes: every interpreter of this precision (per thread, solo) reads its weights
    # from this one copy (~10 MB per float32 interpreter saved)
    content: bytes | None = None
    loaded: bool = False
    error: str | None = None


@dataclass
class DetectorState:
    name: str = "yunet"
    file: str | None = None
    path: Path | None = None  # internal only: never reported on a route
    available: bool = False
    error: str | None = None  # path-free (redact_paths)
    sha256_ok: bool | None = None
    runtime: str = "opencv"


@dataclass
class _ThreadState:
    classifiers: dict[str, Classifier] = field(default_factory=dict)
    detector: YuNet | None = None


class Runtime:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.card: ModelCard | None = None
        self.card_error: str | None = None
        self.models: dict[str, ModelState] = {}
        self.detector = DetectorState()
        # starting -> loading -> warming -> ready | degraded (some models unusable) | failed
        self.phase = "starting"
        self.started_at = time.time()
        self.ready_at: float | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._inflight = 0
        self._solo: _ThreadState | None = None  # solo_threads interpreters, one request at a time
        self._solo_lock = threading.Lock()
        self._detector: YuNet | None = None  # the loaded detector: each thread runs its own copy

    # ---------------------------------------------------------------- status

    @property
    def ready(self) -> bool:
        return self.phase == "ready"

    @property
    def inflight(self) -> int:
        return self._inflight

    def loaded_precisions(self) -> list[str]:
        return [p for p, m in self.models.items() if m.loaded]

    def reasons(self) -> list[str]:
        """Why the service is not (fully) ready, for /health/ready and the logs."""
        out = []
        if self.card_error:
            out.append(self.card_error)
        out += [m.error for m in self.models.values() if m.error]
        if self.detector_blocks_ready():
            out.append(f"face detector unavailable: {self.detector.error}")
        if self.phase in ("starting", "loading", "warming"):
            out.append(f"{self.phase} models")
        return out

    def detector_blocks_ready(self) -> bool:
        """No usable detector and no opt-in to the degraded mode (MASKLITE_DETECTOR_OPTIONAL)."""
        return self.detector.error is not None and not self.settings.detector_optional

    def default_precision(self) -> str:
        if self.card is not None and "int8" not in self.card.models and self.card.models:
            return next(iter(self.card.models))
        return "int8"

    # ---------------------------------------------------------------- loading

    def load(self) -> None:
        """Blocking: card -> sha256 -> probe interpreters -> detector -> per-thread warm-up -> ready."""
        self.phase = "loading"
        t0 = time.perf_counter()
        tame_malloc()
        cv2.setNumThreads(self.settings.opencv_threads)
        models_dir = self.settings.models_dir
        try:
            self.card = load_card(models_dir)
        except Exception as exc:  # noqa: BLE001 - any problem with the card means not ready, not a crash
            message = f"cannot load model card from {models_dir}: {type(exc).__name__}: {exc}"
            self.card_error = redact_paths(message)
            log.error("NOT READY: %s", message)
            self._fail()
            return
        # built aside, then swapped in: request handlers read self.models from the event loop
        self.models = {p: self._load_model(models_dir, p) for p in self.card.models}
        self._load_detector()
        if not any(m.loaded for m in self.models.values()):
            log.error("NOT READY: no usable model in %s", models_dir)
            self._fail()
            return
        self.phase = "warming"
        try:
            self._executor = ThreadPoolExecutor(self.settings.threads, thread_name_prefix="masklite-infer")
            self._warm_all_threads()
            if self.settings.solo_threads > 1:
                solo = self._build_state(self.settings.solo_threads, [self.default_precision()])
                self._warm_state(solo)
                self._solo = solo
        except Exception as exc:  # noqa: BLE001
            self.card_error = f"warm-up failed: {type(exc).__name__}: {exc}"
            log.exception("NOT READY: %s", self.card_error)
            self._fail()
            return
        if any(m.error for m in self.models.values()) or self.detector_blocks_ready():
            # the good models still serve (without a detector: only detect_faces=false); readiness stays
            # false so an orchestrator notices
            self.phase = "degraded"
            telemetry.READY.set(0)
            log.error(
                "NOT READY (serving %s only): %s",
                ",".join(self.loaded_precisions()),
                "; ".join(self.reasons()),
            )
            return
        self.phase = "ready"
        self.ready_at = time.time()
        telemetry.READY.set(1)
        log.info(
            "ready in %.1f s: models %s, detector %s, %d inference threads",
            time.perf_counter() - t0,
            ",".join(self.loaded_precisions()),
            self.detector.path if self.detector.available else f"UNAVAILABLE ({self.detector.error})",
            self.settings.threads,
        )

    def _fail(self) -> None:
        self.phase = "failed"
        telemetry.READY.set(0)

    def _load_model(self, models_dir: Path, precision: str) -> ModelState:
        state = ModelState(precision)
        try:
            path, content = read_model_file(self.card, models_dir, precision)  # type: ignore[arg-type]
            Classifier(content, num_threads=1)  # probe: a file with the right hash can still be unloadable
        except Exception as exc:  # noqa: BLE001
            message = f"model {precision!r}: {type(exc).__name__}: {exc}"
            state.error = redact_paths(message)
            log.error("model %s unusable: %s", precision, message)
            return state
        state.path, state.content, state.loaded = path, content, True
        return state

    def _load_detector(self) -> None:
        """The card's detector (shipped in models/) or $MASKLITE_DETECTOR_PATH, sha256-checked against the
        card (masklite.faces.load_detector). Missing, mismatched or unloadable: not ready, unless
        MASKLITE_DETECTOR_OPTIONAL opts in (then another .onnx than the card's runs as it is, on OpenCV)."""
        s, spec = self.settings, self.card.detector  # type: ignore[union-attr]
        self.detector.name = spec.name
        self.detector.file = s.detector_path.name if s.detector_path else spec.file
        try:
            detector = load_served_detector(s, spec)
        except Exception as exc:  # noqa: BLE001 - reported by /health/ready, never a crash
            if isinstance(exc, ChecksumError):
                self.detector.sha256_ok = False
            message = f"{type(exc).__name__}: {exc}"
            self.detector.error = redact_paths(message)
            if s.detector_optional:
                log.warning("face detector unavailable, whole images will be classified: %s", message)
            else:
                log.error("face detector unavailable, NOT READY: %s", message)
            return
        files = detector.files
        assert files is not None
        if files.sha256_ok is False:
            log.warning(
                "detector %s does not match the card's sha256; using it anyway (optional)", files.source
            )
        # `file` stays the card's detector (what the routes report), `runtime` says what runs it
        self.detector.file, self.detector.sha256_ok = files.source.name, files.sha256_ok
        self.detector.runtime, self.detector.path = detector.runtime, files.model
        self.detector.available = True
        self._detector = detector

    def _build_state(self, num_threads: int, precisions: list[str] | None = None) -> _ThreadState:
        """One classifier per loaded precision (or those given) and one detector, on `num_threads` LiteRT
        threads each."""
        state = _ThreadState()
        for precision, m in self.models.items():
            if m.loaded and (precisions is None or precision in precisions):
                state.classifiers[precision] = Classifier(
                    m.content,  # type: ignore[arg-type]
                    num_threads=num_threads,
                    spec=self.card.model_input(precision),  # type: ignore[union-attr]
                    name=m.path.name,  # type: ignore[union-attr]
                )
        if self._detector is not None:
            state.detector = self._detector.for_thread(num_threads)
        return state

    def _thread_state(self) -> _ThreadState:
        state: _ThreadState | None = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = self._build_state(1)
        return state

    def _warm_all_threads(self) -> None:
        n = self.settings.threads
        barrier = threading.Barrier(n)
        futures = [self._executor.submit(self._warm_thread, barrier) for _ in range(n)]  # type: ignore[union-attr]
        for f in futures:
            f.result(timeout=600)

    def _warm_thread(self, barrier: threading.Barrier) -> None:
        barrier.wait(timeout=120)  # holds each task on its own thread, so every thread gets warmed
        self._warm_state(self._thread_state())

    def _warm_state(self, state: _ThreadState) -> None:
        rng = np.random.default_rng(0)
        rgb = rng.integers(0, 256, WARMUP_SHAPE, dtype=np.uint8)
        for _ in range(self.settings.warmup_runs):
            if state.detector is not None:
                state.detector.detect(rgb)
            for precision, classifier in state.classifiers.items():
                models = Models(self.card, classifier)  # type: ignore[arg-type]
                predict_frame(rgb, models, PredictOptions(model=precision, detect_faces=False))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        telemetry.READY.set(0)

    # ---------------------------------------------------------------- serving

    def resolve_precision(self, precision: str) -> str:
        """The precision a request asked for, when it can be served now; else a 4xx/503 ApiError."""
        if self.card is None or self.phase not in ("ready", "degraded"):
            raise self.not_ready_error()
        if precision not in self.card.models:
            known = ", ".join(sorted(self.card.models))
            raise ApiError(422, "unknown_model", f"unknown model {precision!r}; available: {known}")
        if not self.models[precision].loaded:
            raise ApiError(
                503,
                "model_unavailable",
                self.models[precision].error or "model not loaded",
                {"Retry-After": str(self.settings.retry_after_s)},
            )
        return precision

    def check_detector(self, detect_faces: bool) -> None:
        """A request that wants faces needs the detector; whole-image requests do not."""
        if detect_faces and not self.detector.available and not self.settings.detector_optional:
            raise ApiError(
                503,
                "detector_unavailable",
                f"face detector unavailable ({self.detector.error}); "
                "detect_faces=false classifies the whole image",
                {"Retry-After": str(self.settings.retry_after_s)},
            )

    def not_ready_error(self) -> ApiError:
        telemetry.REJECTIONS.labels("not_ready").inc()
        why = "; ".join(self.reasons()) or self.phase
        retry = {"Retry-After": str(self.settings.retry_after_s)}
        return ApiError(503, "not_ready", f"service not ready: {why}", retry)

    def admit(self) -> None:
        """Take an in-flight slot or refuse at once (no queue growth under overload)."""
        if self._inflight >= self.settings.max_inflight:
            telemetry.REJECTIONS.labels("overloaded").inc()
            raise ApiError(
                503,
                "overloaded",
                f"server busy: {self._inflight} requests in flight (limit {self.settings.max_inflight})",
                {"Retry-After": str(self.settings.retry_after_s)},
            )
        self._inflight += 1
        telemetry.INFLIGHT.inc()

    def release(self) -> None:
        self._inflight -= 1
        telemetry.INFLIGHT.dec()

    async def predict(self, data: bytes, options: PredictOptions) -> ImageResult:
        """Image bytes -> the pipeline, on an inference thread (keeping the caller's contextvars: the request
        id in logs); `timings_ms["queue"]` is the wait for that thread."""
        if self._executor is None:
            raise self.not_ready_error()
        ctx = contextvars.copy_context()
        submitted = time.perf_counter()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, ctx.run, self._predict, data, options, submitted)

    def _predict(self, data: bytes, options: PredictOptions, submitted: float) -> ImageResult:
        queue_ms = (time.perf_counter() - submitted) * 1e3
        # alone in flight (this request is the one admitted): take the idle cores, if no lone request
        # that has company by now still holds them
        solo = self._solo is not None and self._inflight == 1 and self._solo_lock.acquire(blocking=False)
        own = self._thread_state()
        state = self._solo if solo else own
        precision = options.model
        classifier = state.classifiers.get(precision) or own.classifiers[precision]  # type: ignore[arg-type]
        try:
            result = predict_image(data, Models(self.card, classifier, state.detector), options)  # type: ignore[arg-type]
        finally:
            if solo:
                self._solo_lock.release()
        if solo:
            telemetry.SOLO.inc()
        result.timings_ms["queue"] = queue_ms
        return result


def get_runtime(request: Request) -> Runtime:
    """The app's inference runtime (model card, thread pool, admission control)."""
    return request.app.state.runtime
