"""The worker's side of the job queue (sync): claim, heartbeat, report progress, finish, ack.

Claiming uses a Redis Streams consumer group: XREADGROUP hands each new job to one worker, and the
entry stays in the group's pending list until that worker acknowledges it. A live worker keeps its
entry's idle time near zero (heartbeat: XCLAIM JUSTID to itself); when a worker dies the idle time
grows, and once it passes `reclaim_after` another worker takes the entry over with XAUTOCLAIM and
runs the job again. Results are stored under their content address, so a job that runs twice still
leaves one result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from redis.exceptions import ResponseError

from attrgraph.protocol.keys import CONSUMER_GROUP, EVENTS_MAX, FINISHED_JOB_TTL_S, Keys
from attrgraph.protocol.records import JobEvent, JobRecord, text

# queued -> running, unless it was cancelled meanwhile. A reclaimed job is already "running".
_START = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then return state or 'missing' end
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then return 'cancel' end
redis.call('HSET', KEYS[1], 'state', 'running', 'worker', ARGV[1], 'started_at', ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'event', 'started', 'data', ARGV[3])
return 'running'
"""

# The end of a job, in one step: final state, event, inflight released, entry acknowledged.
# KEYS: job, events, inflight, queue.
# ARGV: job id, state, fields json, event, data, ttl, entry, group, events kept
_FINISH = """
local fields = cjson.decode(ARGV[3])
for name, value in pairs(fields) do redis.call('HSET', KEYS[1], name, value) end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[9], '*', 'event', ARGV[4], 'data', ARGV[5])
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
redis.call('XACK', KEYS[4], ARGV[8], ARGV[7])
redis.call('XDEL', KEYS[4], ARGV[7])
return 1
"""


@dataclass(frozen=True)
class Claim:
    model: str
    entry_id: str
    job_id: str | None  # None: the entry was deleted (a cancelled job) before we read it
    deliveries: int = 1


class Consumer:
    def __init__(self, client: redis.Redis, keys: Keys, worker_id: str, reclaim_after_s: float) -> None:
        self.r = client
        self.keys = keys
        self.worker_id = worker_id
        self.reclaim_after_ms = int(reclaim_after_s * 1000)
        self._start = client.register_script(_START)
        self._finish = client.register_script(_FINISH)

    def ensure_groups(self, models: list[str]) -> None:
        for model in models:
            try:
                # id 0: jobs submitted before any worker existed are still delivered.
                self.r.xgroup_create(self.keys.queue(model), CONSUMER_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def claim(self, models: list[str], block_ms: int) -> Claim | None:
        """A job abandoned by a dead worker if there is one, else the next new job (blocking)."""
        for model in models:
            stale = self._reclaim(model)
            if stale is not None:
                return stale
        streams = {self.keys.queue(m): ">" for m in models}
        reply: Any = self.r.xreadgroup(CONSUMER_GROUP, self.worker_id, streams, count=1, block=block_ms)  # type: ignore[arg-type]
        for stream, entries in reply or []:
            for entry_id, fields in entries:
                model = text(stream)[len(self.keys.queue("")) :]
                return Claim(model, text(entry_id), _job_id(fields))
        return None

    def _reclaim(self, model: str) -> Claim | None:
        stream = self.keys.queue(model)
        reply: Any = self.r.xautoclaim(
            stream, CONSUMER_GROUP, self.worker_id, self.reclaim_after_ms, "0-0", count=1
        )
        entries = reply[1] if reply else []
        if not entries:
            return None
        entry_id, fields = entries[0]
        entry = text(entry_id)
        pending: Any = self.r.xpending_range(stream, CONSUMER_GROUP, min=entry, max=entry, count=1)
        deliveries = int(pending[0]["times_delivered"]) if pending else 1
        return Claim(model, entry, _job_id(fields), deliveries)

    def heartbeat(self, claim: Claim) -> None:
        """Reset the entry's idle time so no other worker reclaims a job that is still running."""
        self.r.xclaim(
            self.keys.queue(claim.model), CONSUMER_GROUP, self.worker_id, 0, [claim.entry_id], justid=True
        )

    def release(self, claim: Claim) -> None:
        """Hand a job back (graceful shutdown): make it idle at once so the next worker reclaims it."""
        self.r.xclaim(
            self.keys.queue(claim.model),
            CONSUMER_GROUP,
            self.worker_id,
            0,
            [claim.entry_id],
            idle=self.reclaim_after_ms + 1,
            justid=True,
        )

    def load(self, job_id: str) -> JobRecord | None:
        """The job, or None when it is gone (expired); RecordError when it cannot be read."""
        raw = self.r.hgetall(self.keys.job(job_id))
        return JobRecord.from_hash(raw) if raw else None

    def start(self, job: JobRecord) -> str:
        """'running' if the job is ours to run; 'cancel' if cancelled while queued; else its state."""
        data = orjson.dumps({"job_id": job.job_id, "worker": self.worker_id})
        reply = self._start(
            keys=[self.keys.job(job.job_id), self.keys.job_events(job.job_id)],
            args=[self.worker_id, time.time(), data, EVENTS_MAX],
        )
        return str(reply.decode() if isinstance(reply, bytes) else reply)

    def publish(self, job_id: str, event: JobEvent, **fields: str) -> None:
        with self.r.pipeline(transaction=False) as pipe:
            if fields:
                pipe.hset(self.keys.job(job_id), mapping=fields)  # type: ignore[arg-type]
            pipe.xadd(self.keys.job_events(job_id), event.to_fields(), maxlen=EVENTS_MAX, approximate=True)  # type: ignore[arg-type]
            pipe.execute()

    def cancel_requested(self, job_id: str) -> bool:
        return self.r.hget(self.keys.job(job_id), "cancel_requested") == b"1"

    def finish(self, claim: Claim, job: JobRecord, event: JobEvent) -> None:
        """Record the outcome, tell the listeners, release identical requests, acknowledge."""
        self._end(claim, job.job_id, self.keys.inflight(job.result_id), event)

    def fail_unreadable(self, claim: Claim, job_id: str, message: str) -> None:
        """End a job whose record cannot be read (another version wrote it): failed, acknowledged.
        Its result id is unknown, so identical requests are released by the state, not the key."""
        event = JobEvent(event="failed", data={"job_id": job_id, "message": message})
        self._end(claim, job_id, self.keys.inflight(""), event)

    def _end(self, claim: Claim, job_id: str, inflight: str, event: JobEvent) -> None:
        state = {"done": "done", "failed": "failed", "cancelled": "cancelled"}[event.event]
        fields: dict[str, str] = {"finished_at": str(time.time())}
        if event.data.get("message"):
            fields["error"] = str(event.data["message"])
        if state == "done":
            fields["percent"] = "100"
        self._finish(
            keys=[
                self.keys.job(job_id),
                self.keys.job_events(job_id),
                inflight,
                self.keys.queue(claim.model),
            ],
            args=[
                job_id,
                state,
                orjson.dumps(fields),
                event.event,
                orjson.dumps(event.data),
                FINISHED_JOB_TTL_S,
                claim.entry_id,
                CONSUMER_GROUP,
                EVENTS_MAX,
            ],
        )

    def ack(self, claim: Claim) -> None:
        """Drop an entry that has nothing left to run (a cancelled or finished job)."""
        stream = self.keys.queue(claim.model)
        with self.r.pipeline(transaction=False) as pipe:
            pipe.xack(stream, CONSUMER_GROUP, claim.entry_id)
            pipe.xdel(stream, claim.entry_id)
            pipe.execute()


def _job_id(fields: dict[bytes, bytes] | None) -> str | None:
    # None fields: an entry deleted (cancelled job) while pending, as XAUTOCLAIM reports it.
    if not fields or b"job" not in fields:
        return None
    return text(fields[b"job"])
