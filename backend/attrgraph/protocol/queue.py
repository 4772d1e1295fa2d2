"""The API's side of the job queue (async): submit, inspect, cancel, and read progress events.

Jobs go into one Redis stream per model (keys.queue), read by the workers' consumer group; the job
itself is a hash (keys.job). Submission is one Lua script, so deduplication is atomic: of any number
of concurrent identical requests exactly one creates a job and the rest join it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from attrgraph.protocol.keys import CONSUMER_GROUP, FINISHED_JOB_TTL_S, INFLIGHT_TTL_S, JOB_TTL_S, Keys
from attrgraph.protocol.records import JobEvent, JobRecord, text

# KEYS: result, inflight, queue stream, new job hash.  ARGV: job key prefix, max queue, job id, ttls,
# then the job hash as field/value pairs.
_SUBMIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'ready'} end
local existing = redis.call('GET', KEYS[2])
if existing then
  local state = redis.call('HGET', ARGV[1] .. existing, 'state')
  if state == 'queued' or state == 'running' then return {'joined', existing} end
end
if redis.call('XLEN', KEYS[3]) >= tonumber(ARGV[2]) then return {'full'} end
local entry = redis.call('XADD', KEYS[3], '*', 'job', ARGV[3])
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[4], 'entry_id', entry, unpack(fields))
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[5]))
redis.call('SET', KEYS[2], ARGV[3], 'EX', tonumber(ARGV[4]))
return {'queued', ARGV[3]}
"""

# A queued job is cancelled at once (and taken out of the stream); a running one is flagged and its
# worker stops at its next progress report. KEYS: job, queue, inflight, events. ARGV: job id, now,
# event data, finished ttl.
_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return nil end
if state == 'queued' then
  local entry = redis.call('HGET', KEYS[1], 'entry_id')
  if entry then redis.call('XDEL', KEYS[2], entry) end
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'cancel_requested', '1', 'finished_at', ARGV[2])
  if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
  redis.call('XADD', KEYS[4], '*', 'event', 'cancelled', 'data', ARGV[3])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[4]))
  return 'cancelled'
end
if state == 'running' then redis.call('HSET', KEYS[1], 'cancel_requested', '1') end
return state
"""


@dataclass(frozen=True)
class Submitted:
    outcome: Literal["ready", "queued", "joined", "full"]
    job_id: str | None = None


class JobQueue:
    def __init__(self, client: aioredis.Redis, keys: Keys, max_queue: int) -> None:
        self.r = client
        self.keys = keys
        self.max_queue = max_queue
        self._submit = client.register_script(_SUBMIT)
        self._cancel = client.register_script(_CANCEL)

    async def submit(self, job: JobRecord) -> Submitted:
        """Create `job` unless its result exists (ready) or an identical job is live (joined)."""
        k = self.keys
        record = job.to_hash()
        record.pop("entry_id", None)  # the script sets it from XADD
        fields = [x for pair in record.items() for x in pair]
        reply = await self._submit(
            keys=[
                job.result_key(k),
                k.inflight(job.result_id),
                k.queue(job.model),
                k.job(job.job_id),
            ],
            args=[k.job(""), self.max_queue, job.job_id, INFLIGHT_TTL_S, JOB_TTL_S, *fields],
        )
        outcome: Any = text(reply[0])
        return Submitted(outcome, text(reply[1]) if len(reply) > 1 else None)

    async def placed(self, submitted: Submitted, job: JobRecord) -> tuple[str, int]:
        """The live job a submission ended in (`job`, or the identical one it joined) and how many
        jobs are ahead of it."""
        job_id = submitted.job_id or job.job_id
        current = await self.get(job_id)
        return job_id, await self.position(current) if current is not None else 0

    async def get(self, job_id: str) -> JobRecord | None:
        raw: Any = await self.r.hgetall(self.keys.job(job_id))
        return JobRecord.from_hash(raw) if raw else None

    async def position(self, job: JobRecord) -> int:
        """Jobs in the same queue ahead of `job` that no worker has started yet."""
        stream = self.keys.queue(job.model)
        start = "-"
        try:
            for group in await self.r.xinfo_groups(stream):
                if group["name"] in (CONSUMER_GROUP, CONSUMER_GROUP.encode()):
                    last = group["last-delivered-id"]
                    start = "(" + text(last)
        except ResponseError:  # no stream yet
            return 0
        if not job.entry_id:
            return 0
        ahead: Any = await self.r.xrange(stream, start, "(" + job.entry_id, count=self.max_queue + 1)
        return len(ahead)

    async def cancel(self, job: JobRecord) -> str | None:
        k = self.keys
        data = orjson.dumps({"job_id": job.job_id, "message": "cancelled by request"})
        state = await self._cancel(
            keys=[
                k.job(job.job_id),
                k.queue(job.model),
                k.inflight(job.result_id),
                k.job_events(job.job_id),
            ],
            args=[job.job_id, time.time(), data, FINISHED_JOB_TTL_S],
        )
        return None if state is None else text(state)

    async def events(self, job_id: str, after: str, block_ms: int) -> list[tuple[str, JobEvent]]:
        """Events after stream id `after`, waiting up to `block_ms` for the first one."""
        reply: Any = await self.r.xread({self.keys.job_events(job_id): after}, block=block_ms, count=100)
        if not reply:
            return []
        _, entries = reply[0]
        return [(text(eid), JobEvent.from_fields(fields)) for eid, fields in entries]
