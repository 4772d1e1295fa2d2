"""`attrgraph worker`: a long-lived process that holds models and turns queued jobs into graphs.

    load models once -> advertise them -> loop: claim a job, trace it, store the graph, acknowledge.

Two helper threads run beside the loop: heartbeats (keep this worker listed, keep the claimed job
from being reclaimed) and the fast lane (tokenize, predictions, dashboards, answered while the
main thread traces). The model is used by one thing at a time: tracing and predictions share a lock,
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
from typing import Any, TypeVar

import redis

from attrgraph.protocol import stored_graph
from attrgraph.protocol.consumer import Claim, Consumer
from attrgraph.protocol.ids import new_id
from attrgraph.protocol.keys import Keys
from attrgraph.protocol.records import GraphMeta, JobEvent, JobRecord
from attrgraph.protocol.registry import WorkerInfo, WorkerRegistry
from attrgraph.protocol.schemas import ModelInfo
from attrgraph.protocol.store import GraphWriter
from attrgraph.protocol.worker_calls import WorkerCallServer
from attrgraph.settings import Settings
from attrgraph.worker.calls import WorkerCallHandler
from attrgraph.worker.interventions import run_intervention
from attrgraph.worker.tracer import Progress, Tracer, UserError

log = logging.getLogger("attrgraph.worker")
T = TypeVar("T")

PROGRESS_INTERVAL_S = 0.2  # at most this often per phase: events stay few, cancellation stays quick
POLL_S = 1.0  # longest blocking wait on Redis: how quickly a stop request is noticed


class JobCancelled(Exception):
    pass


class WorkerStopping(Exception):
    pass


def guarded(job: JobRecord, base: dict[str, Any], compute: Callable[[], T]) -> T | JobEvent:
    """Run one job's computation: its result, or the event that ends the job otherwise.

    Cancellation and a user's error end the job; a stopping worker or a lost Redis propagate (the
    claim is handed back or reclaimed); anything else fails the job, never the worker.
    """
    try:
        return compute()
    except JobCancelled:
        return JobEvent(event="cancelled", data={**base, "message": "cancelled by request"})
    except UserError as exc:
        return JobEvent(event="failed", data={**base, "message": str(exc)})
    except (WorkerStopping, redis.ConnectionError, redis.TimeoutError):
        raise
    except Exception as exc:
        log.exception("job %s failed", job.job_id)
        return JobEvent(
            event="failed", data={**base, "message": f"internal error: {type(exc).__name__}: {exc}"}
        )


class Worker:
    def __init__(self, settings: Settings, backend: Tracer, client: redis.Redis) -> None:
        self.settings = settings
        self.tracer = backend
        self.r = client
        self.keys = Keys(settings.key_prefix)
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{new_id()[:6]}"
        self.consumer = Consumer(client, self.keys, self.worker_id, settings.reclaim_after_s)
        self.registry = WorkerRegistry(client, self.keys, settings.heartbeat_s)
        self.store = GraphWriter(client, self.keys, settings.graph_cache_bytes)
        self.models: list[ModelInfo] = []
        self.ready = threading.Event()
        self.graphs_computed = 0
        self._stop = threading.Event()
        self._model_lock = threading.Lock()
        self._current: Claim | None = None
        self._current_job: str | None = None
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
            threading.Thread(target=self._fast_lane_loop, args=(names,), name="fast-lane", daemon=True),
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
            log.info("worker %s stopped after %d graphs", self.worker_id, self.graphs_computed)

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

    def _fast_lane_loop(self, names: list[str]) -> None:
        lane = WorkerCallHandler(self.tracer, self._model_lock)
        server = WorkerCallServer(self.r, self.keys, names, lane.handle)
        try:
            while not self._stop.is_set():
                try:
                    server.serve_once(timeout_s=self.poll_s)
                except redis.RedisError as exc:
                    log.warning("fast lane: %s", exc)
                    self._stop.wait(1.0)
        finally:
            lane.close()

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
        job = self.consumer.load(claim.job_id) if claim.job_id else None
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
        if job.kind == "intervention":
            return run_intervention(self, job)
        base = {"job_id": job.job_id, "graph_id": job.graph_id}
        if self.store.exists(job.graph_id):  # computed meanwhile under the same content address
            return JobEvent(event="done", data=base)
        started = time.monotonic()
        outcome = guarded(job, base, lambda: self._compute_graph(job))
        if isinstance(outcome, JobEvent):
            return outcome
        meta = outcome
        self.graphs_computed += 1
        seconds = round(time.monotonic() - started, 3)
        log.info("job %s: graph %s in %.2fs", job.job_id, job.graph_id, seconds)
        return JobEvent(
            event="done", data={**base, "seconds": seconds, "nodes": meta.n_nodes, "links": meta.n_links}
        )

    def _compute_graph(self, job: JobRecord) -> GraphMeta:
        with self._model_lock:
            graph = self.tracer.trace(job.spec, self._progress(job))
        meta, gz, nodes = stored_graph.encode(
            graph, graph_id=job.graph_id, model=job.spec.model, transcoders=job.spec.transcoders
        )
        self.store.put(meta, gz, nodes)
        return meta

    def _progress(self, job: JobRecord) -> Progress:
        last: dict[str, Any] = {"phase": "", "at": 0.0}

        def report(phase: str, done: int, total: int) -> None:
            if self._stop.is_set():
                raise WorkerStopping
            now = time.monotonic()
            if phase == last["phase"] and now - last["at"] < PROGRESS_INTERVAL_S and done < total:
                return
            last.update(phase=phase, at=now)
            if self.consumer.cancel_requested(job.job_id):
                raise JobCancelled
            percent = round(100.0 * done / total, 1) if total else 0.0
            data = {"job_id": job.job_id, "phase": phase, "done": done, "total": total, "percent": percent}
            self.consumer.publish(
                job.job_id, JobEvent(event="progress", data=data), phase=phase, percent=str(percent)
            )

        return report
