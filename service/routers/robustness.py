"""POST /v1/robustness: start a per-layer weight-robustness job (the `robustness` package) → 202 + job id.

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

from fastapi import Request
from fastapi.responses import JSONResponse

from service.bodies import PartRule
from service.jobsubmit import job_route, job_router, start_job
from service.robustness_job import GridSpec, robustness_params

router = job_router()

_EVALSET_DOC = {"type": "string", "format": "binary", "description": "zip, a folder per label"}


@job_route(
    router,
    "/v1/robustness",
    GridSpec,
    {"evalset": _EVALSET_DOC},
    summary="Start a robustness job: perturb each layer's weights, re-measure accuracy",
)
async def start_robustness(request: Request) -> JSONResponse:
    zip_limit = request.app.state.settings.evalset_max_bytes
    evalset = PartRule(zip_limit, what="the evaluation-set zip")
    uploads = {"evalset": evalset}
    # the params part may be as large as the zip, as before the parser was shared
    return await start_job(
        request, "robustness", GridSpec, uploads, robustness_params, params_max_bytes=zip_limit
    )
