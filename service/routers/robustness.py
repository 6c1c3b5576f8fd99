"""POST /v1/robustness: start a per-layer weight-robustness job (masklite/robustness.py) → 202 + job id.

Body, either
    application/json      the parameters (all optional): {"precision": "int8", "layers": "all",
                          "kinds": ["multiply", "add"], "scalars": [...], "noise_sigmas": [...],
                          "bitflip_rates": [...], "seed": 0, "max_images": null}
    multipart/form-data   part `params` (that JSON, optional) and part `evalset` (optional): a zip with one
                          folder per label. It is validated here, in memory (422 when it is not a usable
                          set), and handed to the job process without ever touching the disk.
Without an upload the job uses the evaluation set shipped beside the models (models/evalset.zip).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from service.bodies import PartRule, job_body_doc, read_job_body
from service.errors import error_responses
from service.jobkinds import GridSpec, job_card, robustness_params, submit_job
from service.schemas import JobAccepted
from service.security import require_api_key

router = APIRouter(tags=["jobs"], dependencies=[Depends(require_api_key)])

_EVALSET_DOC = {"type": "string", "format": "binary", "description": "zip, a folder per label"}


@router.post(
    "/v1/robustness",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(400, 401, 403, 413, 415, 422, 429, 503),
    openapi_extra=job_body_doc(GridSpec, {"evalset": _EVALSET_DOC}),
    summary="Start a robustness job: perturb each layer's weights, re-measure accuracy",
)
async def start_robustness(request: Request) -> JSONResponse:
    settings = request.app.state.settings
    zip_limit = settings.evalset_max_bytes
    evalset = PartRule(zip_limit, what="the evaluation-set zip")
    spec, parts = await read_job_body(request, GridSpec, {"evalset": evalset}, params_max_bytes=zip_limit)
    upload = parts["evalset"][0].data if "evalset" in parts else None
    card = await asyncio.to_thread(job_card, request)
    params, public = await asyncio.to_thread(robustness_params, spec, card, settings, upload)
    return submit_job(request, "robustness", params, public)
