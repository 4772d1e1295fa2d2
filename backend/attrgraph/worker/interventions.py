"""The worker's side of intervention jobs: run the backend's `intervene`, store the result.

Intervention jobs travel through the same queue, claim, heartbeat, progress and cancellation
machinery as graph jobs (worker.py); only the computation and where the result goes differ.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import orjson

from attrgraph.protocol.interventions import InterventionTracer
from attrgraph.protocol.keys import INTERVENTION_TTL_S
from attrgraph.protocol.records import JobEvent, JobRecord

if TYPE_CHECKING:
    from attrgraph.worker.loop import Worker

log = logging.getLogger("attrgraph.worker")


def run_intervention(worker: Worker, job: JobRecord) -> JobEvent:
    from attrgraph.worker.loop import guarded

    key = worker.keys.intervention(job.graph_id)
    base = {"job_id": job.job_id, "intervention_id": job.graph_id}
    if worker.r.exists(key):
        return JobEvent(event="done", data=base)
    backend = worker.tracer
    if job.intervention is None or not hasattr(backend, "intervene"):
        return JobEvent(event="failed", data={**base, "message": "this worker cannot run interventions"})
    intervention = job.intervention
    started = time.monotonic()
    progress = worker._progress(job)

    def compute() -> None:
        with worker._model_lock:
            progress("intervene", 0, 1)
            result = _backend(backend).intervene(
                job.spec.model, job.spec.transcoders, job.spec.prompt, intervention, progress
            )
            progress("intervene", 1, 1)
        result = {**result, "intervention_id": job.graph_id, "graph_id": intervention.graph_id}
        worker.r.set(key, orjson.dumps(result), ex=INTERVENTION_TTL_S)

    failure = guarded(job, base, compute)
    if failure is not None:
        return failure
    seconds = round(time.monotonic() - started, 3)
    log.info("job %s: intervention %s in %.2fs", job.job_id, job.graph_id, seconds)
    return JobEvent(event="done", data={**base, "seconds": seconds})


def _backend(backend: object) -> InterventionTracer:
    return backend  # type: ignore[return-value]
