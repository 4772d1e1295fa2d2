"""Who is writing: bearer tokens when configured (ATTRGRAPH_TOKENS="alice:tok1,bob:tok2"), else a
display name the browser sends (X-Attrgraph-User header, URL-encoded, or the attrgraph_user cookie).

    tokens unset, read_only off   anyone writes, under the display name they give ("anonymous")
    tokens set                     writes need `Authorization: Bearer <token>` (401 without, 403 wrong)
    read_only on                   anonymous writes are refused (403); token holders still write

Every write also counts against a per-client rate limit (write_rate_per_minute).
"""

from __future__ import annotations

import contextlib
import hmac
import unicodedata
from typing import Annotated
from urllib.parse import unquote

from fastapi import Depends, HTTPException, Request

from attrgraph.api.collab import check_origin
from attrgraph.api.deps import ServicesDep
from attrgraph.api.limits import count_against_limit
from attrgraph.settings import Settings

MAX_NAME_CHARS = 64
USER_HEADER = "x-attrgraph-user"
USER_COOKIE = "attrgraph_user"


def parse_tokens(spec: str) -> dict[str, str]:
    """token -> user name, from "alice:tok1,bob:tok2"."""
    out = {}
    for part in spec.split(","):
        name, sep, token = part.strip().partition(":")
        if sep and name.strip() and token.strip():
            out[token.strip()] = name.strip()
    return out


def clean_name(raw: str | None) -> str:
    """A display name: control characters dropped, whitespace collapsed, at most 64 characters."""
    if not raw:
        return "anonymous"
    with contextlib.suppress(UnicodeDecodeError):
        raw = unquote(raw, errors="strict")
    kept = "".join(c for c in raw if unicodedata.category(c)[0] != "C")
    name = " ".join(kept.split())[:MAX_NAME_CHARS]
    return name or "anonymous"


def token_user(settings: Settings, request: Request) -> str | None:
    """The user a valid bearer token names; None without a header. 403 for a wrong token."""
    header = request.headers.get("authorization", "")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(status_code=401, detail="expected `Authorization: Bearer <token>`")
    for known, name in parse_tokens(settings.tokens).items():
        if hmac.compare_digest(known.encode(), token.strip().encode()):
            return name
    raise HTTPException(status_code=403, detail="unknown token")


def identity(settings: Settings, request: Request) -> tuple[str, bool]:
    """(name, may write)."""
    tokens = parse_tokens(settings.tokens)
    if tokens:
        try:
            user = token_user(settings, request)
        except HTTPException:
            user = None
        if user is not None:
            return user, True
        return clean_name(request.headers.get(USER_HEADER) or request.cookies.get(USER_COOKIE)), False
    name = clean_name(request.headers.get(USER_HEADER) or request.cookies.get(USER_COOKIE))
    return name, not settings.read_only


async def require_writer(services: ServicesDep, request: Request) -> str:
    """The author of a write (a dependency), after access control and the write rate limit."""
    settings = services.settings
    tokens = parse_tokens(settings.tokens)
    if tokens:
        user = token_user(settings, request)
        if user is None:
            raise HTTPException(
                status_code=401,
                detail="this server needs a token to write",
                headers={"WWW-Authenticate": "Bearer"},
            )
    elif settings.read_only:
        raise HTTPException(status_code=403, detail="this server is read-only")
    else:
        check_origin(settings, request)  # no credential: refuse what a foreign page made a browser send
        user = clean_name(request.headers.get(USER_HEADER) or request.cookies.get(USER_COOKIE))
    await count_against_limit(
        services.redis,
        services.keys,
        settings,
        request,
        bucket="write:",
        per_minute=settings.write_rate_per_minute,
        what="writes",
    )
    return user


WriterDep = Annotated[str, Depends(require_writer)]
