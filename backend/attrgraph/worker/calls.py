"""Worker calls, answered beside the job queue: tokenize (with predictions) and dashboards.

Tokenizing (a prompt, or a chat rendered with the model's template) and dashboards need no model
and are answered at once. A prompt longer than the caller's `max_tokens` gets its tokens but no
predictions: the model is never run past what the API will accept (or past its context).
Predictions run the model, which a trace may be using (with its hooks installed), so they wait for
the model lock in a small pool of threads, never blocking the requests behind them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from attrgraph.protocol.records import WorkerCall, WorkerCallKind, WorkerCallReply
from attrgraph.protocol.schemas import Token
from attrgraph.worker.tracer import Tracer, UserError

log = logging.getLogger("attrgraph.worker")

Answer = Callable[[WorkerCallReply], None]


class WorkerCallHandler:
    def __init__(self, tracer: Tracer, model_lock: threading.Lock) -> None:
        self.tracer = tracer
        self.model_lock = model_lock
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="predict")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def handle(self, model: str, request: WorkerCall, answer: Answer) -> None:
        handlers: dict[WorkerCallKind, Callable[[str, WorkerCall, Answer], None]] = {
            "tokenize": self._tokenize,
            "feature": self._feature,
        }
        try:
            handlers[request.kind](model, request, answer)
        except UserError as exc:
            answer(WorkerCallReply(status=422, error=str(exc)))
        except Exception as exc:
            log.exception("worker call %s failed", request.kind)
            answer(WorkerCallReply(status=503, error=f"worker error: {type(exc).__name__}: {exc}"))

    def _feature(self, model: str, request: WorkerCall, answer: Answer) -> None:
        a = request.args
        found = self.tracer.feature(str(a["transcoders"]), int(a["layer"]), int(a["index"]))
        if found is None:
            answer(WorkerCallReply(status=404, error="no such feature"))
        else:
            answer(WorkerCallReply(result=found))

    def _tokenize(self, model: str, request: WorkerCall, answer: Answer) -> None:
        args = request.args
        if "messages" in args:
            text = self.tracer.render_chat(model, [dict(m) for m in args["messages"]])
        else:
            text = str(args["prompt"])
        tokens = self.tracer.tokenize(model, text)
        top_k = int(args.get("top_k", 0))
        max_tokens = args.get("max_tokens")
        if max_tokens is not None and len(tokens) > int(max_tokens):
            top_k = 0
        estimate = self._estimate(model, args.get("estimate"), len(tokens))
        if top_k <= 0:
            result = {"text": text, "tokens": [t.model_dump() for t in tokens], "predictions": []}
            answer(WorkerCallReply(result={**result, **estimate}))
            return
        # Predictions wait for the model lock in the pool, so the calls behind this one are not held up.
        self._pool.submit(self._predict, model, request, text, tokens, top_k, estimate, answer)

    def _estimate(self, model: str, asked: object, n_tokens: int) -> dict[str, object]:
        """{"estimate": ...} when the caller asked for one (args["estimate"]: the transcoder set and
        trace settings) and the tracer can estimate; else nothing. Arithmetic only: no model lock."""
        estimator = getattr(self.tracer, "estimate", None)  # tracers without one answer without it
        if not isinstance(asked, dict) or estimator is None:
            return {}
        settings = dict(asked)
        found = estimator(model, str(settings.pop("transcoders", "")), n_tokens, settings)
        return {} if found is None else {"estimate": found}

    def _predict(
        self,
        model: str,
        request: WorkerCall,
        text: str,
        tokens: list[Token],
        top_k: int,
        estimate: dict[str, object],
        answer: Answer,
    ) -> None:
        try:
            if not self.model_lock.acquire(timeout=max(0.0, request.deadline - time.time())):
                return  # the caller has given up and reports the timeout itself
            try:
                predictions = self.tracer.predict(model, [t.id for t in tokens], top_k)
            finally:
                self.model_lock.release()
            result = {
                "text": text,
                "tokens": [t.model_dump() for t in tokens],
                "predictions": [p.model_dump() for p in predictions],
                **estimate,
            }
            answer(WorkerCallReply(result=result))
        except UserError as exc:
            answer(WorkerCallReply(status=422, error=str(exc)))
        except Exception as exc:
            log.exception("predictions failed")
            answer(WorkerCallReply(status=503, error=f"worker error: {type(exc).__name__}: {exc}"))
