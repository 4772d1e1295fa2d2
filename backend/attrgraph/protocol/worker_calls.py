"""Worker calls: short request/response calls from the API to any worker of a model, over Redis.

Tokenizing a prompt, next-token predictions and feature dashboards need the worker's tokenizer,
model or files, but must not wait behind the job queue. The API pushes a call onto
keys.worker_calls(model) and blocks on a reply list made for that one call; each worker has a
thread that pops calls and answers them while its main thread traces. Calls carry a deadline so a
worker never spends time on an answer nobody is waiting for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio as aioredis

from attrgraph.protocol.ids import new_id
from attrgraph.protocol.keys import WORKER_CALL_QUEUE_TTL_S, WORKER_CALL_REPLY_TTL_S, Keys
from attrgraph.protocol.records import WorkerCall, WorkerCallKind, WorkerCallReply, text

log = logging.getLogger(__name__)


class WorkerCallTimeout(Exception):
    """No worker answered in time (all busy, or none running)."""


class WorkerCallClient:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.r = client
        self.keys = keys

    async def call(
        self, model: str, kind: WorkerCallKind, args: dict[str, Any], timeout_s: float
    ) -> WorkerCallReply:
        request = WorkerCall(id=new_id(), kind=kind, deadline=time.time() + timeout_s, args=args)
        queue = self.keys.worker_calls(model)
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.lpush(queue, request.model_dump_json())
            pipe.expire(queue, WORKER_CALL_QUEUE_TTL_S)
            await pipe.execute()
        reply: Any = await self.r.blpop([self.keys.worker_call_reply(request.id)], timeout=timeout_s)
        if reply is None:
            raise WorkerCallTimeout(f"no worker answered within {timeout_s:g}s")
        return WorkerCallReply.model_validate_json(reply[1])


Handler = Callable[[str, WorkerCall, Callable[[WorkerCallReply], None]], None]


class WorkerCallServer:
    """Pops calls for `models` and passes each to `handler(model, call, respond)`.

    The handler may respond later from another thread (predictions wait for the model to be free);
    `respond` drops replies whose deadline has passed.
    """

    def __init__(self, client: redis.Redis, keys: Keys, models: list[str], handler: Handler) -> None:
        self.r = client
        self.keys = keys
        self.queues = {keys.worker_calls(m): m for m in models}
        self.handler = handler

    def serve_once(self, timeout_s: float = 1.0) -> bool:
        popped: Any = self.r.brpop(list(self.queues), timeout=timeout_s)
        if popped is None:
            return False
        queue, payload = popped
        try:
            request = WorkerCall.model_validate_json(payload)
        except ValueError:
            log.warning("dropping a malformed worker call")
            return True
        if request.deadline < time.time():
            return True
        self.handler(self.queues[text(queue)], request, lambda reply: self.respond(request, reply))
        return True

    def respond(self, request: WorkerCall, reply: WorkerCallReply) -> None:
        if request.deadline < time.time():
            return
        key = self.keys.worker_call_reply(request.id)
        with self.r.pipeline(transaction=False) as pipe:
            pipe.lpush(key, reply.model_dump_json())
            pipe.expire(key, WORKER_CALL_REPLY_TTL_S)
            pipe.execute()
