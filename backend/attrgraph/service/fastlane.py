"""The worker's fast lane: tokenize, predictions and dashboards, answered beside the trace queue.

Tokenizing and dashboards need no model and are answered at once. Predictions run the model, which
a trace may be using (with its hooks installed), so they wait for the model lock in a small pool
of threads, never blocking the requests behind them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from attrgraph.service.backend import TracingBackend, UserError
from attrgraph.service.records import RpcReply, RpcRequest
from attrgraph.service.schemas import Token

log = logging.getLogger("attrgraph.worker")

Answer = Callable[[RpcReply], None]


class FastLane:
    def __init__(self, backend: TracingBackend, model_lock: threading.Lock) -> None:
        self.backend = backend
        self.model_lock = model_lock
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="predict")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def handle(self, model: str, request: RpcRequest, answer: Answer) -> None:
        try:
            if request.kind == "feature":
                a = request.args
                found = self.backend.feature(str(a["transcoders"]), int(a["layer"]), int(a["index"]))
                if found is None:
                    answer(RpcReply(status=404, error="no such feature"))
                else:
                    answer(RpcReply(result=found))
                return
            tokens = self.backend.tokenize(model, str(request.args["prompt"]))
            top_k = int(request.args.get("top_k", 0))
            if top_k <= 0:
                answer(RpcReply(result={"tokens": [t.model_dump() for t in tokens], "predictions": []}))
                return
            self._pool.submit(self._predict, model, request, tokens, top_k, answer)
        except UserError as exc:
            answer(RpcReply(status=422, error=str(exc)))
        except Exception as exc:
            log.exception("fast-lane request failed")
            answer(RpcReply(status=503, error=f"worker error: {type(exc).__name__}: {exc}"))

    def _predict(
        self, model: str, request: RpcRequest, tokens: list[Token], top_k: int, answer: Answer
    ) -> None:
        try:
            if not self.model_lock.acquire(timeout=max(0.0, request.deadline - time.time())):
                return  # the caller has given up and reports the timeout itself
            try:
                predictions = self.backend.predict(model, [t.id for t in tokens], top_k)
            finally:
                self.model_lock.release()
            result = {
                "tokens": [t.model_dump() for t in tokens],
                "predictions": [p.model_dump() for p in predictions],
            }
            answer(RpcReply(result=result))
        except Exception as exc:
            log.exception("predictions failed")
            answer(RpcReply(status=503, error=f"worker error: {type(exc).__name__}: {exc}"))
