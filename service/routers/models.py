"""GET /v1/models: what the model card says, plus what this process actually loaded."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from masklite.card import MASK_LABEL, UNKNOWN_LABEL, DerivedDetectorFile, ModelCard
from service.errors import ApiError, error_responses
from service.runtime import get_runtime
from service.schemas import DetectorInfo, InputInfo, ModelInfo, ModelsResponse, RuntimeFile

router = APIRouter(tags=["models"])
# model files are downloadable here (service/routers/model_files.py): the camera page's device mode
MODEL_FILES_URL = "/v1/models/files/"


def _runtime_files(files: dict[str, DerivedDetectorFile]) -> dict[str, RuntimeFile]:
    return {
        runtime: RuntimeFile(file=f.file, sha256=f.sha256, url=MODEL_FILES_URL + f.file)
        for runtime, f in files.items()
    }


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
        device_model=card.device_model,
        mask_label=MASK_LABEL,
        unknown_label=UNKNOWN_LABEL,
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
            runtime_files=_runtime_files(card.detector.runtime_files),
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
                runtime_files=_runtime_files(entry.runtime_files),
            )
            for precision, entry in card.models.items()
        ],
    )


def _card_file_names(card: ModelCard) -> set[str]:
    names = {card.detector.file, *(f.file for f in card.detector.runtime_files.values())}
    for entry in card.models.values():
        names.add(entry.file)
        names.update(f.file for f in entry.runtime_files.values())
    return names


@router.get(
    MODEL_FILES_URL + "{name}",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, **error_responses(404, 503)},
    summary="Download a model file the card names",
)
async def model_file(name: str, request: Request) -> FileResponse:
    """The bytes of one file named in the model card (a classifier, the detector, or their conversions),
    for clients that run the models themselves. Check them against the card's sha256 (`/v1/models`)."""
    rt = get_runtime(request)
    card = rt.card
    if card is None:
        raise rt.not_ready_error()
    path = rt.settings.models_dir / name
    # only names the card lists, never a path: no traversal, no other file of the folder
    if name not in _card_file_names(card) or not path.is_file():
        raise ApiError(404, "not_found", f"no model file {name!r}")
    # revalidate (ETag) rather than cache: a rebuilt model keeps its name
    return FileResponse(
        path,
        media_type="application/octet-stream",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
