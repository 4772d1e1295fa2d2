"""One Redis pub/sub subscriber per API process, fanned out to every live stream (`/live` SSE).

A subscription per viewer would hold one pooled Redis connection each, so ~100 open graph pages
would starve every other request. Here a single connection carries the union of the channels the
open streams want; each message is formatted once and copied into the streams' bounded queues.

Ends are clean: when Redis fails, every stream gets an end marker (the client's EventSource
reconnects) and the hub reconnects with backoff; a stream too slow to keep up is ended rather than
buffered without bound; past `max_streams` a new stream is refused (503) instead of exhausting
sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from attrgraph.protocol.records import text

log = logging.getLogger("attrgraph.live")

POLL_S = 0.2  # how long one read waits: the longest a new stream waits for its SUBSCRIBE to go out
BACKOFF_MAX_S = 5.0


class LiveFull(Exception):
    """Too many open streams in this process."""


class Subscriber:
    """One open stream: what it listens to and the SSE chunks waiting for it (None: the end)."""

    def __init__(self, channels: frozenset[str], queue_size: int) -> None:
        self.channels = channels
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=queue_size)
        self.ready = asyncio.Event()
        self.ended = False

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        while self.queue.full():  # the end marker must fit; pending events no longer matter
            self.queue.get_nowait()
        self.queue.put_nowait(None)


def sse_chunk(data: bytes) -> bytes | None:
    """The SSE bytes for one published payload (`{"event": name, ...}`); None for garbage."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict):
        return None
    name = "".join(c for c in text(payload.get("event", "message")) if c.isalnum()) or "message"
    return f"event: {name}\n".encode() + b"data: " + orjson.dumps(payload) + b"\n\n"


class LiveHub:
    def __init__(self, client: aioredis.Redis, max_streams: int, queue_size: int = 256) -> None:
        self.client = client
        self.max_streams = max_streams
        self.queue_size = queue_size
        self._subs: set[Subscriber] = set()
        self._wanted: dict[str, set[Subscriber]] = {}
        self._confirmed: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def open_streams(self) -> int:
        return len(self._subs)

    def open(self, channels: Iterable[str]) -> Subscriber:
        if len(self._subs) >= self.max_streams:
            raise LiveFull(f"at most {self.max_streams} live streams per API process")
        sub = Subscriber(frozenset(channels), self.queue_size)
        self._subs.add(sub)
        for channel in sub.channels:
            self._wanted.setdefault(channel, set()).add(sub)
        self._check_ready(sub)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="live-hub")
        return sub

    def close(self, sub: Subscriber) -> None:
        self._subs.discard(sub)
        for channel in sub.channels:
            group = self._wanted.get(channel)
            if group is not None:
                group.discard(sub)
                if not group:
                    del self._wanted[channel]
        self._wake.set()

    async def aclose(self) -> None:
        for sub in list(self._subs):
            sub.end()
            self.close(sub)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _check_ready(self, sub: Subscriber) -> None:
        if sub.channels <= self._confirmed:
            sub.ready.set()

    async def _run(self) -> None:
        backoff = 0.25
        while self._subs:
            try:
                await self._serve()
                backoff = 0.25  # no stream left; a new one may have come during the close
            except (RedisError, OSError) as exc:
                log.warning("live updates: Redis failed (%s); ending %d streams", exc, len(self._subs))
                for sub in list(self._subs):
                    sub.end()
                    self.close(sub)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _serve(self) -> None:
        """Until no stream is left: keep the subscription equal to what the streams want and fan
        out what arrives. Raises on Redis errors."""
        pubsub = self.client.pubsub()
        sent: set[str] = set()
        self._confirmed = set()
        try:
            while self._subs:
                self._wake.clear()
                wanted = set(self._wanted)
                if wanted - sent:
                    await pubsub.subscribe(*(wanted - sent))
                    sent |= wanted
                if sent - wanted:
                    await pubsub.unsubscribe(*(sent - wanted))
                    sent -= sent - wanted
                    self._confirmed &= wanted
                if not sent:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), POLL_S)
                    continue
                message = await pubsub.get_message(timeout=POLL_S)
                if message is not None:
                    self._dispatch(message)
        finally:
            self._confirmed = set()
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, message: dict[str, Any]) -> None:
        channel = text(message["channel"])
        kind = text(message["type"])
        if kind == "subscribe":
            self._confirmed.add(channel)
            for sub in self._wanted.get(channel, ()):
                self._check_ready(sub)
            return
        if kind != "message":
            return
        chunk = sse_chunk(message["data"])
        if chunk is None:
            return
        for sub in list(self._wanted.get(channel, ())):
            try:
                sub.queue.put_nowait(chunk)
            except asyncio.QueueFull:
                # Slow reader: end its stream (it reconnects and refetches) rather than buffer.
                sub.end()
                self.close(sub)
