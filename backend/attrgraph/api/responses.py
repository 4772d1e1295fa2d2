"""Response classes and error helpers shared by the routes."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse

from attrgraph.protocol.schemas import ErrorResponse


class OrjsonResponse(JSONResponse):
    """JSON rendered by orjson (fast, and handles numpy values from dashboards)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def field_error(loc: tuple[str | int, ...], message: str, value: Any = None) -> RequestValidationError:
    """A 422 shaped exactly like FastAPI's own validation errors (checks pydantic cannot express,
    e.g. limits that come from the server's settings)."""
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": message, "input": value}])


def unavailable(message: str, retry_after_s: int = 5) -> HTTPException:
    return HTTPException(status_code=503, detail=message, headers={"Retry-After": str(retry_after_s)})


def not_found(message: str) -> HTTPException:
    return HTTPException(status_code=404, detail=message)


# OpenAPI documentation of the error responses every route may give.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body is not valid JSON"},
    404: {"model": ErrorResponse, "description": "Not found"},
    503: {"model": ErrorResponse, "description": "Redis or the workers are unavailable; see Retry-After"},
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    413: {"model": ErrorResponse, "description": "The body is larger than the server accepts"},
}
RATE_ERRORS: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorResponse, "description": "Rate limit; see Retry-After"},
}
