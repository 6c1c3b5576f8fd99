"""Optional API key (MASKLITE_API_KEY). Job and benchmark routers add `Depends(require_api_key)`.

Sent as `X-API-Key: <key>` or `Authorization: Bearer <key>`. No key configured: everything is open.
Missing key → 401, wrong key → 403, both in the error envelope.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.errors import ApiError

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")
_bearer = HTTPBearer(auto_error=False, scheme_name="Bearer")


async def require_api_key(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    check_api_key(request, api_key, bearer)


async def predict_guard(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    """Predict routes: keyed only when MASKLITE_PROTECT_PREDICT=true."""
    if request.app.state.settings.protect_predict:
        check_api_key(request, api_key, bearer)


def check_api_key(request: Request, api_key: str | None, bearer: HTTPAuthorizationCredentials | None) -> None:
    expected = request.app.state.settings.api_key
    if expected is None:
        return
    supplied = api_key or (bearer.credentials if bearer else None)
    if not supplied:
        raise ApiError(
            401,
            "unauthorized",
            "API key required: send X-API-Key or Authorization: Bearer",
            {"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(supplied.encode(), expected.get_secret_value().encode()):
        raise ApiError(403, "forbidden", "invalid API key")
