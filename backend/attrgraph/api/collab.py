"""What the collaboration routes share: the Annotations dependency, ETags and 409 answers."""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.exceptions import HTTPException
from pydantic import BaseModel, Field, StrictInt, StrictStr

from attrgraph.api.deps import Services, ServicesDep
from attrgraph.api.limits import client_id
from attrgraph.api.responses import BODY_ERRORS, OrjsonResponse, field_error
from attrgraph.protocol.annotations import Annotations, Conflict, Item, Kind, NoSuchVersion
from attrgraph.protocol.keys import RATE_WINDOW_S
from attrgraph.protocol.schemas import ErrorResponse
from attrgraph.settings import Settings

# Versions travel through Lua (doubles) and LINDEX (signed 64-bit): bounded well inside both.
MAX_VERSION = 2**53
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


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
        default=None,
        ge=0,
        le=MAX_VERSION,
        description="The version this edit is based on (or If-Match); 0: new",
    )


class RevertBody(BaseModel):
    to_version: StrictInt = Field(
        ge=1, le=MAX_VERSION, description="The version whose value becomes current again"
    )
    version: StrictInt | None = Field(
        default=None, ge=0, le=MAX_VERSION, description="The current version (or If-Match)"
    )


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
        if not digits.isdigit() or len(digits) > 16:
            raise HTTPException(status_code=400, detail='If-Match must be a version ETag such as "3"')
        return int(digits)
    return body_version


def check_text(value: str, limit: int) -> str:
    if len(value) > limit:
        raise field_error(("body", "value"), f"at most {limit} characters", None)
    if "\x00" in value:
        raise field_error(("body", "value"), "NUL characters are not allowed", None)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800"): not storable text
        raise field_error(("body", "value"), "not valid Unicode text (a lone surrogate)", None) from None
    return value


def _host_name(netloc: str) -> str:
    host = netloc.rsplit("@", 1)[-1].lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def check_origin(settings: Settings, request: Request) -> None:
    """Refuse writes a browser was tricked into sending. With tokens the credential is never sent
    by a browser on its own, so only servers without tokens need this: the Host must be one the
    server answers to (loopback names unless ATTRGRAPH_ALLOWED_HOSTS lists others; a DNS-rebound
    name is not among them) and an Origin, when sent, must be that same host."""
    if settings.tokens.strip():
        return
    allowed = {h.strip().lower() for h in settings.allowed_hosts.split(",") if h.strip()}
    host = _host_name(request.headers.get("host", ""))
    if "*" not in allowed and host not in LOOPBACK_HOSTS | allowed:
        raise HTTPException(
            status_code=403,
            detail=f"writes are refused for host {host!r}; list it in ATTRGRAPH_ALLOWED_HOSTS",
        )
    origin = request.headers.get("origin")
    if origin is not None and _host_name(urlsplit(origin).netloc) != host:
        raise HTTPException(status_code=403, detail=f"cross-origin write refused (Origin {origin[:100]!r})")


async def spend_writes(services: Services, request: Request, count: int) -> None:
    """Count `count` writes against the client's write limit at once (the counter require_writer
    keeps); 429 with nothing spent when they do not fit in what is left this minute."""
    if count <= 0:
        return
    settings = services.settings
    now = time.time()
    key = services.keys.rate("write:" + client_id(request, settings), int(now // RATE_WINDOW_S))
    async with services.redis.pipeline(transaction=False) as pipe:
        pipe.incrby(key, count)
        pipe.expire(key, RATE_WINDOW_S)
        total, _ = await pipe.execute()
    if total > settings.write_rate_per_minute:
        await services.redis.decrby(key, count)
        left = max(0, settings.write_rate_per_minute - (total - count))
        raise HTTPException(
            status_code=429,
            detail=f"rate limit: {count} label writes exceed the {left} left of "
            f"{settings.write_rate_per_minute} writes a minute per client",
            headers={"Retry-After": str(int(RATE_WINDOW_S - now % RATE_WINDOW_S) + 1)},
        )


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
    request: Request,
    body: RevertBody,
    *,
    author: str,
) -> OrjsonResponse:
    """A new version whose value is version `body.to_version`'s, if the version the client edited
    (If-Match or `body.version`) is still the current one (else 409)."""
    expected = expected_version(request, body.version)
    try:
        item = await annotations.revert(kind, scope, key, body.to_version, author=author, expected=expected)
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
