"""POST /v1/video: people over time in a video or a stream, as a background job (kind "video") → 202 + id.

Body, either
    multipart/form-data   part `file`: the video (mp4, webm, mov, avi, mkv, gif; MASKLITE_VIDEO_MAX_BYTES),
                          and part `params` (optional JSON: {"stride": 2, "blur": true, ...})
    application/json      {"url": "rtsp://camera/stream", "duration_s": 60, ...}: only hosts listed in
                          MASKLITE_STREAM_URLS (empty by default: no URLs), only rtsp/rtsps/http/https
The job (GET /v1/jobs/{id}) reports progress, can be cancelled (DELETE), and ends with
{summary, people}; artifacts frames.jsonl and, with blur=true, annotated.mp4 (service/videojob.py).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from service.bodies import PartRule
from service.jobsubmit import job_route, job_router, start_job
from service.videojob import VideoRequest, video_params

router = job_router()

_FILE_DOC = {"type": "string", "format": "binary", "description": "mp4, webm, mov, avi, mkv or gif"}


@job_route(
    router,
    "/v1/video",
    VideoRequest,
    {"file": _FILE_DOC},
    summary="Start a video job: track faces, one mask label per person, compliance over time",
)
async def start_video(request: Request) -> JSONResponse:
    settings = request.app.state.settings
    limit = min(settings.video_max_bytes, settings.max_body_bytes)
    uploads = {"file": PartRule(limit, what="the video")}
    return await start_job(request, "video", VideoRequest, uploads, video_params, max_total=limit)
