"""GET /v1/models: what the model card says, plus what this process actually loaded."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.errors import error_responses
from service.runtime import get_runtime
from service.schemas import DetectorInfo, InputInfo, ModelInfo, ModelsResponse

router = APIRouter(tags=["models"])


@router.get(
    "/v1/models", response_model=ModelsResponse, responses=error_responses(503), summary="Model metadata"
)
async def list_models(request: Request) -> ModelsResponse:
    rt = get_runtime(request)
    card = rt.card
    if card is None:
        raise rt.not_ready_error()
    return ModelsResponse(
        name=card.name,
        version=card.version,
        labels=card.labels,
        input=InputInfo(**card.input.model_dump()),
        crop_margin=card.crop_margin,
        min_judgeable_face=card.min_judgeable_face,
        min_face_size=card.min_judgeable_face,
        default_model=rt.default_precision(),
        detector=DetectorInfo(
            name=card.detector.name,
            available=rt.detector.available,
            error=rt.detector.error,
            score_threshold=card.detector.score_threshold,
            nms_threshold=card.detector.nms_threshold,
            file=card.detector.file,
            sha256=card.detector.sha256,
            license=card.detector.license,
            runtime=rt.detector.runtime if rt.detector.available else None,
            max_side=rt.settings.detect_max_side,
        ),
        models=[
            ModelInfo(
                precision=precision,
                file=entry.file,
                bytes=entry.bytes,
                sha256=entry.sha256,
                loaded=rt.models[precision].loaded if precision in rt.models else False,
                error=rt.models[precision].error if precision in rt.models else None,
                decision_threshold=entry.decision_threshold,
                metrics=entry.metrics,
                input=InputInfo(**card.model_input(precision).model_dump()),
            )
            for precision, entry in card.models.items()
        ],
    )
