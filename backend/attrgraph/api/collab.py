"""What the collaboration routes share: the Annotations dependency, ETags and 409 answers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import HTTPException
from pydantic import BaseModel, Field, StrictInt, StrictStr

from attrgraph.api.deps import ServicesDep
from attrgraph.api.responses import BODY_ERRORS, OrjsonResponse, field_error
from attrgraph.protocol.annotations import Annotations, Conflict, Item, Kind, NoSuchVersion
from attrgraph.protocol.schemas import ErrorResponse


def get_annotations(services: ServicesDep, request: Request) -> Annotations:
    found: Annotations | None = getattr(request.app.state, "annotations", None)
    if found is None or found.r is not services.redis:
        found = Annotations(services.redis, services.keys)
        request.app.state.annotations = found
    return found


AnnotationsDep = Annotated[Annotations, Depends(get_annotations)]


# Every write may also meet access control, the write rate limit and a version conflict.
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **BODY_ERRORS,
    401: {"model": ErrorResponse, "description": "This server needs a token to write"},
    403: {"model": ErrorResponse, "description": "Unknown token, or a read-only server"},
    409: {"description": "Someone else wrote first: `current` holds the item as it is now"},
    429: {"model": ErrorResponse, "description": "Write rate limit; see Retry-After"},
}


class WriteBody(BaseModel):
    value: StrictStr = Field(description="The new text; empty clears it (the history keeps it all)")
    version: StrictInt | None = Field(
        default=None, ge=0, description="The version this edit is based on (or send If-Match); 0: new"
    )


class RevertBody(BaseModel):
    to_version: StrictInt = Field(ge=1, description="The version whose value becomes current again")
    version: StrictInt | None = Field(default=None, ge=0, description="The current version (or If-Match)")


def etag(item: Item) -> str:
    return f'"{item.version}"'


def item_response(item: Item, status_code: int = 200) -> OrjsonResponse:
    return OrjsonResponse(
        item.to_json(), status_code=status_code, headers={"ETag": etag(item), "Cache-Control": "no-store"}
    )


def expected_version(request: Request, body_version: int | None) -> int | None:
    header = request.headers.get("if-match")
    if header is not None:
        digits = header.strip().removeprefix("W/").strip('"')
        if not digits.isdigit():
            raise HTTPException(status_code=400, detail='If-Match must be a version ETag such as "3"')
        return int(digits)
    return body_version


def check_text(value: str, limit: int) -> str:
    if len(value) > limit:
        raise field_error(("body", "value"), f"at most {limit} characters", None)
    if "\x00" in value:
        raise field_error(("body", "value"), "NUL characters are not allowed", None)
    return value


async def write(
    annotations: Annotations,
    kind: Kind,
    scope: str,
    key: str,
    value: str,
    *,
    author: str,
    expected: int | None,
) -> OrjsonResponse:
    try:
        item = await annotations.write(kind, scope, key, value, author=author, expected=expected or 0)
    except Conflict as conflict:
        return conflict_response(conflict)
    return item_response(item)


async def revert(
    annotations: Annotations,
    kind: Kind,
    scope: str,
    key: str,
    to_version: int,
    *,
    author: str,
    expected: int | None,
) -> OrjsonResponse:
    try:
        item = await annotations.revert(kind, scope, key, to_version, author=author, expected=expected)
    except Conflict as conflict:
        return conflict_response(conflict)
    except NoSuchVersion as missing:
        raise HTTPException(status_code=404, detail=str(missing)) from None
    return item_response(item)


def conflict_response(conflict: Conflict) -> OrjsonResponse:
    body: dict[str, Any] = {"detail": str(conflict), "current": conflict.current.to_json()}
    return OrjsonResponse(body, status_code=409, headers={"ETag": etag(conflict.current)})


def history_response(items: list[Item]) -> OrjsonResponse:
    return OrjsonResponse({"versions": [i.to_json() for i in items]}, headers={"Cache-Control": "no-store"})
