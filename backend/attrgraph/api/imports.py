"""Graph imports (POST /api/imports), parsed and stored in a child process.

A graph of tens of megabytes becomes several times that in Python objects. Parsing it in the API
process would stall its event loop for seconds and leave the memory with it (the allocator keeps
most of it), so each import runs `python -m attrgraph.api.imports` behind a per-process limit
(settings.import_concurrency): the child validates the JSON (pydantic; 422 with the field), checks
its names and prompt against the service's limits, stores the graph and returns only what the API
needs: the graph id, its feature keys and its labels (clerps). Its memory goes when it exits.

The labels are then written by the API through the versioned path every other write takes
(protocol/annotations.py), not here.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
from typing import Any

import orjson
import redis
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from attrgraph.format.clerps import labels_from_clerps
from attrgraph.format.feature_keys import feature_key_text
from attrgraph.protocol import stored_graph
from attrgraph.protocol.keys import Keys
from attrgraph.protocol.schemas import NAME_PATTERN
from attrgraph.protocol.store import GraphWriter

MAX_ERRORS = 20  # validation errors reported for one document
CHILD_TIMEOUT_S = 600.0

Weight = StrictFloat | StrictInt


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class ImportNode(_Loose):
    node_id: StrictStr = Field(min_length=1, max_length=200)
    feature: StrictInt | None = None
    layer: StrictStr | StrictInt | None = None
    ctx_idx: StrictInt | None = None
    jsNodeId: StrictStr | None = None
    clerp: StrictStr | None = None


class ImportLink(_Loose):
    source: StrictStr
    target: StrictStr
    weight: Weight


class ImportMetadata(_Loose):
    prompt: StrictStr = ""
    prompt_tokens: list[StrictStr] = Field(default_factory=list)
    scan: StrictStr | None = None
    transcoder_set: StrictStr | None = None


class ImportQParams(_Loose):
    clerps: list[tuple[StrictStr, StrictStr]] = Field(default_factory=list)
    pinnedIds: list[StrictStr] = Field(default_factory=list)
    supernodes: list[list[Any]] = Field(default_factory=list)


class ImportShell(_Loose):
    """The document's outline; nodes and links are checked one at a time (no copy of the graph)."""

    metadata: ImportMetadata
    nodes: list[Any]
    links: list[Any]
    qParams: ImportQParams | None = None


_SHELL = TypeAdapter(ImportShell)
_NODE = TypeAdapter(ImportNode)
_LINK = TypeAdapter(ImportLink)


class Rejected(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail


def _errors(exc: ValidationError, prefix: tuple[str | int, ...]) -> list[dict[str, Any]]:
    return [
        {"loc": ["body", *prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]


def validate(graph: Any) -> ImportShell:
    """422 (Rejected) listing up to MAX_ERRORS fields that do not fit the format."""
    try:
        shell = _SHELL.validate_python(graph)
    except ValidationError as exc:
        raise Rejected(422, _errors(exc, ())[:MAX_ERRORS]) from None
    errors: list[dict[str, Any]] = []
    for name, adapter, items in (("nodes", _NODE, shell.nodes), ("links", _LINK, shell.links)):
        for i, item in enumerate(items):
            try:
                adapter.validate_python(item)
            except ValidationError as exc:
                errors.extend(_errors(exc, (name, i)))
                if len(errors) >= MAX_ERRORS:
                    raise Rejected(422, errors[:MAX_ERRORS]) from None
    if errors:
        raise Rejected(422, errors)
    return shell


def _name(given: str | None, fallback: str | None, field: str) -> str:
    name = given or fallback or "imported"
    if not re.fullmatch(NAME_PATTERN, name):
        raise Rejected(
            422,
            [
                {
                    "loc": ["body", "metadata", field],
                    "msg": f"not a usable name ({NAME_PATTERN}); pass ?model= and ?transcoders= instead",
                    "type": "value_error",
                }
            ],
        )
    return name


def _too_long(field: str, limit: int, unit: str) -> Rejected:
    loc = ["body", "metadata", field]
    return Rejected(422, [{"loc": loc, "msg": f"at most {limit} {unit}", "type": "value_error"}])


def prepare(raw: bytes, params: dict[str, Any]) -> tuple[dict[str, Any], str, str, str]:
    """(graph, graph id, model, transcoder set) of a valid document; Rejected otherwise."""
    try:
        graph = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Rejected(400, f"the body is not valid JSON: {exc}") from None
    shell = validate(graph)
    meta = shell.metadata
    if len(meta.prompt) > params["max_prompt_chars"]:
        raise _too_long("prompt", params["max_prompt_chars"], "characters")
    if len(meta.prompt_tokens) > params["max_prompt_tokens"]:
        raise _too_long("prompt_tokens", params["max_prompt_tokens"], "tokens")
    model = _name(params.get("model"), meta.scan, "scan")
    transcoders = _name(params.get("transcoders"), meta.transcoder_set or model, "transcoder_set")
    try:
        canonical = orjson.dumps(graph, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:  # nesting past orjson's limit
        raise Rejected(422, [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]) from None
    graph_id = hashlib.sha256(b"import\0" + canonical).hexdigest()[:32]
    return graph, graph_id, model, transcoders


def run(raw: bytes, params: dict[str, Any]) -> dict[str, Any]:
    """The child's work: validate, store, and report what the API writes next."""
    graph, graph_id, model, transcoders = prepare(raw, params)
    del raw
    meta, gz, nodes = stored_graph.encode(graph, graph_id=graph_id, model=model, transcoders=transcoders)
    client = redis.Redis.from_url(params["redis_url"], socket_connect_timeout=5, socket_timeout=60)
    try:
        GraphWriter(client, Keys(params["key_prefix"]), params["cache_bytes"]).put(meta, gz, nodes)
    except redis.RedisError as exc:
        raise Rejected(503, f"storage unavailable: {type(exc).__name__}: {exc}") from None
    finally:
        client.close()
    features = sorted({k for n in graph["nodes"] if (k := feature_key_text(n)) is not None})
    labels = {k: v[: params["max_label_chars"]] for k, v in labels_from_clerps(graph).items()}
    return {
        "graph_id": graph_id,
        "model": model,
        "transcoders": transcoders,
        "features": features,
        "labels": {k: v for k, v in labels.items() if "\x00" not in v},
    }


async def run_child(raw: bytes, params: dict[str, Any]) -> dict[str, Any]:
    """`run` in a fresh interpreter; Rejected carries its 4xx (or a 503 when the child fails)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "attrgraph.api.imports",
        orjson.dumps(params).decode(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(raw), CHILD_TIMEOUT_S)
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
        raise
    try:
        reply: dict[str, Any] = orjson.loads(out)
    except orjson.JSONDecodeError:
        tail = err.decode(errors="replace")[-500:]
        raise Rejected(503, f"the import process failed (exit {proc.returncode}): {tail}") from None
    if "error" in reply:
        raise Rejected(int(reply["status"]), reply["error"])
    return reply


def main() -> int:
    params = orjson.loads(sys.argv[1])
    try:
        reply = run(sys.stdin.buffer.read(), params)  # no reference here: run() frees the bytes early
    except Rejected as rejected:
        reply = {"status": rejected.status, "error": rejected.detail}
    sys.stdout.buffer.write(orjson.dumps(reply))
    return 0


if __name__ == "__main__":
    sys.exit(main())
