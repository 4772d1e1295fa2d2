"""`attrgraph worker`: a long-lived process that holds models and turns queued jobs into results.

    load models once -> advertise them -> loop: claim a job, run its kind's handler, acknowledge.

Two helper threads run beside the loop: heartbeats (keep this worker listed, keep the claimed job
from being reclaimed) and worker calls (tokenize, predictions, dashboards, answered while the main
thread traces). The model is used by one thing at a time: jobs and predictions share a lock,
because a trace installs hooks on the model that a concurrent forward pass would trip over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from attrgraph.protocol.consumer import Claim, Consumer
from attrgraph.protocol.ids import new_id
from attrgraph.protocol.keys import Keys
from attrgraph.protocol.records import JobEvent, JobRecord, RecordError
from attrgraph.protocol.registry import WorkerInfo, WorkerRegistry
from attrgraph.protocol.schemas import JobKind, ModelInfo
from attrgraph.protocol.store import GraphWriter
from attrgraph.protocol.worker_calls import WorkerCallServer
from attrgraph.settings import Settings
from attrgraph.worker.attention import run_attention
from attrgraph.worker.calls import WorkerCallHandler
from attrgraph.worker.context import JobContext, WorkerStopping, progress_reporter
from attrgraph.worker.interventions import run_intervention
from attrgraph.worker.tracer import Tracer
from attrgraph.worker.traces import run_trace

log = logging.getLogger("attrgraph.worker")

POLL_S = 1.0  # longest blocking wait on Redis: how quickly a stop request is noticed

# What each kind of job runs. A handler receives the payload of its own kind (the record's
# discriminated union guarantees it) and returns the event that ends the job.
JOB_HANDLERS: dict[JobKind, Callable[[JobContext, Any], JobEvent]] = {
    "trace": run_trace,
    "intervene": run_intervention,
    "attention": run_attention,
}


class Worker:
    def __init__(self, settings: Settings, tracer: Tracer, client: redis.Redis) -> None:
        self.settings = settings
        self.tracer = tracer
        self.r = client
        self.keys = Keys(settings.key_prefix)
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{new_id()[:6]}"
        self.consumer = Consumer(client, self.keys, self.worker_id, settings.reclaim_after_s)
        self.registry = WorkerRegistry(client, self.keys, settings.heartbeat_s)
        self.store = GraphWriter(client, self.keys, settings.graph_cache_bytes)
        self.models: list[ModelInfo] = []
        self.ready = threading.Event()
        self.jobs_finished = 0
        self._stop = threading.Event()
        self._model_lock = threading.Lock()
        self._current: Claim | None = None
        self._current_job: str | None = None
        self._interrupted: Claim | None = None  # a job Redis failed under, to hand back on reconnect
        self.poll_s = POLL_S
        self._started_at = time.time()

    # -- lifecycle ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop soon: a running job is handed back to the queue for another worker."""
        self._stop.set()

    def run(self) -> None:
        self.models = self.tracer.load()
        names = [m.name for m in self.models]
        self._retry(lambda: self.consumer.ensure_groups(names))
        self._retry(self._advertise)
        self._check_persistence()
        threads = [
            threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True),
            threading.Thread(target=self._worker_calls_loop, args=(names,), name="worker-calls", daemon=True),
        ]
        for thread in threads:
            thread.start()
        log.info("worker %s ready: %s", self.worker_id, ", ".join(names))
        self.ready.set()
        # Block for less than the reclaim time so abandoned jobs are noticed promptly.
        block_ms = max(50, int(min(self.poll_s, self.settings.reclaim_after_s / 2) * 1000))
        try:
            while not self._stop.is_set():
                try:
                    if self._interrupted is not None:
                        # Idle past the reclaim time at once: rerun now, not after reclaim_after_s.
                        self.consumer.release(self._interrupted)
                        self._interrupted = None
                    claim = self.consumer.claim(names, block_ms)
                    if claim is not None:
                        self.process(claim)
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    log.warning("redis unavailable (%s); retrying", exc)
                    self._stop.wait(1.0)
                except redis.ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    self.consumer.ensure_groups(names)  # Redis lost its data (restart without AOF)
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(timeout=5)
            with contextlib.suppress(redis.RedisError):
                self.registry.withdraw(self.worker_id)
            log.info("worker %s stopped after %d jobs", self.worker_id, self.jobs_finished)

    def _retry(self, action: Callable[[], object]) -> None:
        while not self._stop.is_set():
            try:
                action()
                return
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("waiting for redis: %s", exc)
                self._stop.wait(1.0)

    def _check_persistence(self) -> None:
        # Without AOF a Redis restart loses the queue and every saved graph. Only a warning: managed
        # Redis services often forbid CONFIG, and a throwaway test server may not care.
        try:
            appendonly = self.r.config_get("appendonly").get("appendonly")
        except redis.RedisError:
            return
        if appendonly in ("no", b"no"):
            log.warning(
                "Redis runs without AOF persistence (appendonly no): "
                "a restart loses queued jobs and saved graphs"
            )

    def _advertise(self) -> None:
        info = WorkerInfo(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            device=self.settings.device or "auto",
            models=[m.name for m in self.models],
            started_at=self._started_at,
            current_job=self._current_job,
        )
        self.registry.advertise(info, self.models)

    def _worker_calls_loop(self, names: list[str]) -> None:
        handler = WorkerCallHandler(self.tracer, self._model_lock)
        server = WorkerCallServer(self.r, self.keys, names, handler.handle)
        try:
            while not self._stop.is_set():
                try:
                    server.serve_once(timeout_s=self.poll_s)
                except redis.RedisError as exc:
                    log.warning("worker calls: %s", exc)
                    self._stop.wait(1.0)
        finally:
            handler.close()

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_s):
            try:
                self._advertise()
                claim = self._current
                if claim is not None:
                    self.consumer.heartbeat(claim)
            except redis.RedisError as exc:
                log.warning("heartbeat failed: %s", exc)

    # -- jobs ---------------------------------------------------------------------------------------

    def process(self, claim: Claim) -> None:
        try:
            job = self.consumer.load(claim.job_id) if claim.job_id else None
        except RecordError as exc:
            log.error("job %s: %s", claim.job_id, exc)
            self.consumer.fail_unreadable(claim, claim.job_id or "", str(exc))
            return
        if job is None:  # cancelled while queued (entry deleted) or expired
            self.consumer.ack(claim)
            return
        if claim.deliveries > self.settings.max_attempts:
            message = (
                f"the job was abandoned by {claim.deliveries - 1} workers (crashed or killed); giving up"
            )
            self.consumer.finish(
                claim, job, JobEvent(event="failed", data={"job_id": job.job_id, "message": message})
            )
            return
        state = self.consumer.start(job)
        if state == "cancel":
            self.consumer.finish(claim, job, JobEvent(event="cancelled", data={"job_id": job.job_id}))
            return
        if state != "running":  # already finished by someone else
            self.consumer.ack(claim)
            return
        self._current, self._current_job = claim, job.job_id
        try:
            outcome = self._run(job)
        except (redis.ConnectionError, redis.TimeoutError):
            self._interrupted = claim
            raise
        except WorkerStopping:
            self.consumer.release(claim)
            self.consumer.publish(
                job.job_id, JobEvent(event="requeued", data={"job_id": job.job_id}), state="queued"
            )
            log.info("job %s handed back (worker stopping)", job.job_id)
            return
        finally:
            self._current, self._current_job = None, None
        self.consumer.finish(claim, job, outcome)

    def _run(self, job: JobRecord) -> JobEvent:
        ctx = JobContext(
            job=job,
            tracer=self.tracer,
            redis=self.r,
            keys=self.keys,
            store=self.store,
            model_lock=self._model_lock,
            progress=progress_reporter(self.consumer, job.job_id, self._stop),
        )
        outcome = JOB_HANDLERS[job.kind](ctx, job.payload)
        self.jobs_finished += 1
        return outcome
