"""Every MASKLITE_* environment variable, in one pydantic-settings object.

The table in service/README.md documents them; keep the two in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from masklite.paths import DEFAULT_MODELS_DIR

SERVICE_MAX_PIXELS = 4096 * 4096


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MASKLITE_", extra="ignore")

    # loopback unless told: listening on the network is an explicit choice (the Docker image sets 0.0.0.0)
    host: str = Field("127.0.0.1", description="interface uvicorn binds; 0.0.0.0: every interface")
    port: int = Field(8000, ge=0, le=65535, description="TCP port")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes")
    threads: int = Field(2, ge=1, le=64, description="inference threads per worker process")
    # OpenCV only converts colours and resizes per request (LiteRT runs YuNet): work too small to split,
    # while an idle pool of OpenCV threads cost ~8 ms of CPU per request on 2 cores
    opencv_threads: int = Field(
        1, ge=-1, le=64, description="OpenCV's own thread pool; -1: OpenCV's default (all cores)"
    )
    # a request that runs alone may use the idle cores: its detector and classifier run on this many
    # LiteRT threads (lower latency); with others in flight every request runs on 1 (higher throughput)
    solo_threads: int = Field(
        2, ge=1, le=64, description="LiteRT threads for a request that is alone in flight; 1: off"
    )
    models_dir: Path = Field(DEFAULT_MODELS_DIR, description="folder with model_card.json and *.tflite")
    detector_path: Path | None = Field(
        None, description="YuNet .onnx file; unset: the card's detector file, shipped in models/"
    )
    # a service that cannot find faces is not ready; this opt-in keeps the old degraded mode
    detector_optional: bool = Field(
        False,
        description="true: ready without a usable face detector (whole images classified, with a warning)",
    )
    detector_runtime: Literal["litert", "onnxruntime", "opencv"] | None = Field(
        None, description="what runs YuNet; unset: the model card's detector.runtime (litert)"
    )
    detect_max_side: int = Field(
        640, ge=160, le=1280, description="detector input's longer side; requests may set detect_size"
    )
    max_inflight: int = Field(16, ge=1, description="requests admitted to inference at once, per worker")
    max_body_bytes: int = Field(10_000_000, ge=1, description="largest request body")
    # 4096x4096: any phone photo up to ~16 MP. Decoding costs ~7 bytes per pixel at peak (Pillow's RGBX
    # buffer + the RGB array) on each inference thread, so this bounds the worker's memory.
    max_pixels: int = Field(SERVICE_MAX_PIXELS, ge=1, description="largest image (width*height)")
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 503 responses")
    # an admitted predict holds an in-flight slot while its body arrives: a client that stalls mid-upload
    # must not hold it for ever (MAX_INFLIGHT stalled uploads would otherwise lock predict out)
    body_timeout_s: float = Field(60.0, gt=0, le=3600, description="seconds to receive an admitted body")
    warmup_runs: int = Field(3, ge=0, description="warm-up inferences per thread before ready")
    jobs_dir: Path = Field(
        Path("data/jobs"), description="job artifacts (every replica and worker mounts it); embedded queue"
    )
    # background jobs (service/jobqueue/): robustness grids and benchmarks, in separate processes
    broker_url: str | None = Field(
        None, description="redis://host:6379/0: jobs on Redis, run by workers; unset: embedded SQLite queue"
    )
    run_jobs: bool | None = Field(
        None, description="run jobs in this API process; unset: yes without a broker, no with one"
    )
    max_jobs: int = Field(1, ge=1, le=16, description="jobs one runner (API process or worker) runs at once")
    job_queue: int = Field(4, ge=0, le=1000, description="jobs waiting beyond the running ones; more → 429")
    job_nice: int = Field(10, ge=0, le=19, description="CPU niceness of job processes (predict first)")
    job_workers: int = Field(1, ge=1, le=16, description="evaluation processes per robustness job")
    jobs_keep: int = Field(200, ge=1, description="finished jobs kept on disk; the oldest are deleted")
    # a runner renews each running job's lease every 0.5 s; one silent this long failed (killed, cut off)
    job_lease_s: float = Field(20.0, ge=2, le=600, description="a running job's lease without heartbeats")
    job_input_ttl_s: int = Field(
        86_400, ge=60, description="uploads of a queued job kept at most this long (deleted when it starts)"
    )
    job_lock_dir: Path | None = Field(
        None, description="host lock folder (benchmarks run alone per folder); unset: <jobs_dir>/.locks"
    )
    evalset_max_bytes: int = Field(8_000_000, ge=1, description="largest uploaded evaluation-set zip")
    evalset_max_files: int = Field(5_000, ge=1, description="most members in an uploaded evaluation-set zip")
    evalset_max_uncompressed_bytes: int = Field(
        100_000_000, ge=1, description="most bytes an uploaded evaluation-set zip may inflate to"
    )
    # POST /v1/video: uploads are bounded by this and by max_body_bytes (the whole request), whichever is less
    video_max_bytes: int = Field(10_000_000, ge=1, description="largest uploaded video")
    video_max_s: float = Field(600.0, gt=0, le=86_400, description="longest video or stream read, seconds")
    # caller URLs are never fetched unless allowed: empty = no stream URLs at all (request forgery)
    stream_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="hosts (host or host:port) /v1/video may read rtsp(s)/http(s) streams from; empty: off",
    )
    api_key: SecretStr | None = Field(
        None, description="when set, required on the job routes; unset: job routes only on a loopback bind"
    )
    protect_predict: bool = Field(False, description="also require the API key on predict routes")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated origins allowed by CORS"
    )
    # HTTPS (service/tls.py): a phone's browser opens the camera only over HTTPS
    tls: Literal["off", "self-signed"] = Field(
        "off", description="self-signed: a certificate for this machine's LAN addresses, made once in tls_dir"
    )
    tls_dir: Path = Field(Path("data/tls"), description="where the self-signed certificate and key are kept")
    tls_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="more names/IPs for the self-signed certificate (Docker: the host)"
    )
    tls_certfile: Path | None = Field(None, description="your own certificate (PEM); with tls_keyfile")
    tls_keyfile: Path | None = Field(None, description="the key of tls_certfile (PEM)")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = Field(True, description="one log line per request, with its request id")

    @field_validator("cors_origins", "stream_urls", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("detector_path", "broker_url", "job_lock_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("tls_hosts", mode="before")
    @classmethod
    def _split_tls_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [h.strip() for h in value.split(",") if h.strip()]
        return value

    @field_validator("tls_certfile", "tls_keyfile", mode="before")
    @classmethod
    def _empty_tls_file_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _cert_with_key(self) -> Settings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError(
                "MASKLITE_TLS_CERTFILE and MASKLITE_TLS_KEYFILE go together: set both or neither"
            )
        return self
