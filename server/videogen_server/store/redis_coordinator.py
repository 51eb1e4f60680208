"""The Coordinator (services/ports.py) of replicas sharing one Redis, through redis-py's asyncio API.

Keys (``prefix`` is ``videogen:`` unless given, the store's):
- ``{prefix}lease:{video_id}`` -> the holder's instance, expiring after `lease_ttl` (PX). Taken, renewed and
  released only by Lua scripts that compare the holder first, so an instance never extends or deletes a
  lease that expired and was taken by another.
- ``{prefix}polllock:{video_id}`` -> the instance reading that task upstream, ``SET NX PX``; freed by
  compare-and-delete.
- ``{prefix}notices``: the pub/sub channel. A message is ``kind:instance:video_id`` (the instance is hex, so
  the first two colons split it; a video id may contain more); receivers drop their own.

Notices run on a connection of their own (a subscribed connection can do nothing else), opened by `open`.
When it breaks (Redis restarted, or silent past a PING: hung), it is re-established with backoff (0.1 s
doubling to 2 s) and a "resync" notice is yielded once subscribed again, since messages published in the
gap are lost. `notices()` never raises because Redis is down; it ends at `close()`.

Everything else: one round trip each, bounded by the store's timeouts (store/redis_connection.py), Redis
unreachable or hung -> `errors.StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Final, TypeVar

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.client import PubSub

from videogen_server.config import redact_url
from videogen_server.services.ports import Notice
from videogen_server.store.redis_connection import (
    CONNECT_TIMEOUT_S,
    DEFAULT_PREFIX,
    SOCKET_TIMEOUT_S,
    connect,
    is_unavailable,
    unavailable,
)

__all__ = ["RedisCoordinator"]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_LEASE_TTL_S: Final = 10.0
_BACKOFF_FIRST_S: Final = 0.1
_BACKOFF_MAX_S: Final = 2.0
# How long the subscription may stay silent before a PING checks that Redis is still there; a PING not
# answered within the socket timeout counts as a break (a hung Redis or a dead peer that sent no FIN).
_PING_AFTER_SILENCE_S: Final = 5.0
# How often the listener wakes up to check the silence (and a bound on noticing a PING unanswered).
_TICK_S: Final = 1.0
# Notices not yet consumed; past this, they collapse into one "resync" (the consumer re-reads everything).
_QUEUE_MAX: Final = 10_000
_KINDS: Final = frozenset({"changed", "released"})

# KEYS: lease; ARGV: instance, ttl ms. 1 when this instance holds it now (taken, or already its: renewed).
_ACQUIRE: Final = """
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: leases; ARGV: instance, ttl ms. The (1-based) positions of the keys renewed: those still this
# instance's.
_RENEW: Final = """
local out = {}
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then
    redis.call('PEXPIRE', k, ARGV[2])
    out[#out + 1] = i
  end
end
return out
"""

# KEYS: leases; ARGV: instance, channel, then the video id of each key. Deletes those still this instance's
# and publishes "released" for each, in the same step (a released lease always comes with its notice).
_RELEASE: Final = """
local n = 0
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then
    redis.call('DEL', k)
    redis.call('PUBLISH', ARGV[2], 'released:' .. ARGV[1] .. ':' .. ARGV[i + 2])
    n = n + 1
  end
end
return n
"""

# KEYS: lock; ARGV: instance.
_COMPARE_AND_DELETE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisCoordinator:
    """Coordinator on Redis. See the module docstring for keys, notices and failures."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        lease_ttl: float = DEFAULT_LEASE_TTL_S,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        socket_timeout: float = SOCKET_TIMEOUT_S,
    ) -> None:
        if lease_ttl <= 0:
            raise ValueError("lease_ttl must be positive")
        self._url = url
        self._prefix = prefix
        self._lease_ttl = lease_ttl
        self._connect_timeout = connect_timeout
        self._socket_timeout = socket_timeout
        self._instance = uuid.uuid4().hex
        self._channel = f"{prefix}notices"
        self._client: aioredis.Redis | None = None
        self._sub_client: aioredis.Redis | None = None
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._queue: asyncio.Queue[Notice | None] = asyncio.Queue()  # None: the end (put by close)
        self._closed = False

    @property
    def instance(self) -> str:
        return self._instance

    @property
    def lease_ttl(self) -> float:
        return self._lease_ttl

    @property
    def description(self) -> str:
        """The Redis for a log line: its URL without credentials."""
        return redact_url(self._url)

    # -- lifecycle -------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, and subscribe to notices: returns once subscribed, or after the connect and socket
        timeouts when Redis does not answer (then the listener keeps trying, and says "resync" once in)."""
        if self._closed:
            raise RuntimeError("the coordinator is closed")
        if self._client is not None:
            return
        client = connect(
            self._url, connect_timeout=self._connect_timeout, socket_timeout=self._socket_timeout
        )
        self._scripts = {
            name: client.register_script(text)
            for name, text in (
                ("acquire", _ACQUIRE),
                ("renew", _RENEW),
                ("release", _RELEASE),
                ("compare_and_delete", _COMPARE_AND_DELETE),
            )
        }
        self._client = client
        # A client of its own for the subscription: no retry inside redis-py, the listener sees every break.
        self._sub_client = connect(
            self._url,
            connect_timeout=self._connect_timeout,
            socket_timeout=self._socket_timeout,
            retry_broken=False,
        )
        self._listener = asyncio.create_task(self._listen(), name="videogen-coordinator-notices")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._subscribed.wait(), self._connect_timeout + self._socket_timeout + _BACKOFF_FIRST_S
            )

    async def close(self) -> None:
        """Stop listening and drop the connections; prompt even with Redis down or hung (every step is
        bounded by the connect timeout)."""
        if self._closed:
            return
        self._closed = True
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        self._queue.put_nowait(None)
        for client in (self._client, self._sub_client):
            if client is not None:
                with contextlib.suppress(rexc.RedisError, OSError, TimeoutError):
                    await asyncio.wait_for(client.aclose(), self._connect_timeout * 2)
        self._client = self._sub_client = None

    # -- leases ----------------------------------------------------------------------------------------

    async def acquire(self, video_id: str) -> bool:
        held = await self._call(
            lambda c: self._scripts["acquire"](
                keys=[self._lease_key(video_id)],
                args=[self._instance, self._ttl_ms(self._lease_ttl)],
                client=c,
            )
        )
        return int(held) == 1

    async def renew(self, video_ids: Collection[str]) -> set[str]:
        ids = list(dict.fromkeys(video_ids))  # once each, in a stable order the reply indexes into
        if not ids:
            self._check()
            return set()
        kept = await self._call(
            lambda c: self._scripts["renew"](
                keys=[self._lease_key(v) for v in ids],
                args=[self._instance, self._ttl_ms(self._lease_ttl)],
                client=c,
            )
        )
        return {ids[int(i) - 1] for i in kept}

    async def release(self, video_ids: Collection[str]) -> None:
        ids = list(dict.fromkeys(video_ids))
        if not ids:
            self._check()
            return
        await self._call(
            lambda c: self._scripts["release"](
                keys=[self._lease_key(v) for v in ids], args=[self._instance, self._channel, *ids], client=c
            )
        )

    async def holder(self, video_id: str) -> str | None:
        value = await self._call(lambda c: c.get(self._lease_key(video_id)))
        return None if value is None else str(value)

    # -- the poll lock ---------------------------------------------------------------------------------

    async def lock_poll(self, video_id: str, ttl: float) -> bool:
        key = self._poll_lock_key(video_id)
        taken = await self._call(lambda c: c.set(key, self._instance, nx=True, px=self._ttl_ms(ttl)))
        return bool(taken)

    async def unlock_poll(self, video_id: str) -> None:
        await self._call(
            lambda c: self._scripts["compare_and_delete"](
                keys=[self._poll_lock_key(video_id)], args=[self._instance], client=c
            )
        )

    # -- notices ---------------------------------------------------------------------------------------

    async def announce(self, video_id: str) -> None:
        message = f"changed:{self._instance}:{video_id}"
        await self._call(lambda c: c.publish(self._channel, message))

    async def notices(self) -> AsyncIterator[Notice]:
        while not self._closed or not self._queue.empty():
            notice = await self._queue.get()
            if notice is None:
                return
            yield notice

    async def _listen(self) -> None:
        """Keep one subscription to the channel for as long as the coordinator is open (cancelled by
        close); after any gap (a break, or no subscription yet because Redis was down at open) a "resync"
        goes to the consumer once subscribed again."""
        assert self._sub_client is not None
        delay = _BACKOFF_FIRST_S
        gap = False
        down_logged = False
        while True:
            pubsub = self._sub_client.pubsub()
            try:
                await self._subscribe(pubsub)
                if gap:
                    self._push(Notice("resync"))
                    log.info("coordinator %s: notices subscribed again", self.description)
                gap, down_logged, delay = False, False, _BACKOFF_FIRST_S
                self._subscribed.set()
                await self._pump(pubsub)
            except Exception as exc:  # whatever broke it, the listener lives on
                gap = True
                if not down_logged:  # once per outage, not once per retry
                    down_logged = True
                    log.warning(
                        "coordinator %s: notices subscription lost (%s: %s); retrying",
                        self.description,
                        type(exc).__name__,
                        exc,
                    )
            finally:
                # Without waiting for the socket to close (a hung peer): redis-py's nowait disconnect.
                with contextlib.suppress(rexc.RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX_S)

    async def _subscribe(self, pubsub: PubSub) -> None:
        """SUBSCRIBE, and wait for Redis to confirm it (from then on nothing published is missed)."""
        await pubsub.subscribe(self._channel)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._socket_timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise rexc.TimeoutError("no confirmation of SUBSCRIBE")
            message = await pubsub.get_message(timeout=remaining)
            if message is not None and message.get("type") == "subscribe":
                return
            if message is not None and message.get("type") == "message":
                self._deliver(message.get("data"))

    async def _pump(self, pubsub: PubSub) -> None:
        """Deliver messages until the subscription breaks (raises); a silent one is checked with a PING."""
        loop = asyncio.get_running_loop()
        last_heard = loop.time()
        ping_sent: float | None = None
        while True:
            message = await pubsub.get_message(timeout=_TICK_S)
            now = loop.time()
            if message is not None:
                last_heard, ping_sent = now, None  # a PONG counts as heard, as any message
                if message.get("type") == "message":
                    self._deliver(message.get("data"))
                continue
            if ping_sent is None:
                if now - last_heard >= _PING_AFTER_SILENCE_S:
                    await pubsub.ping()
                    ping_sent = now
            elif now - ping_sent > self._socket_timeout:
                raise rexc.TimeoutError("no answer to PING on the notices subscription")

    def _deliver(self, data: object) -> None:
        kind, sep, rest = str(data).partition(":")
        sender, sep2, video_id = rest.partition(":")
        if not (sep and sep2) or kind not in _KINDS:
            log.warning("coordinator %s: ignored a malformed notice", self.description)
            return
        if sender == self._instance:
            return  # our own, echoed back by Redis
        self._push(Notice(kind, video_id))

    def _push(self, notice: Notice) -> None:
        if self._queue.qsize() >= _QUEUE_MAX:
            # Nobody is consuming fast enough: the backlog collapses into one "re-read everything".
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(Notice("resync"))
        self._queue.put_nowait(notice)

    # -- plumbing --------------------------------------------------------------------------------------

    def _lease_key(self, video_id: str) -> str:
        return f"{self._prefix}lease:{video_id}"

    def _poll_lock_key(self, video_id: str) -> str:
        return f"{self._prefix}polllock:{video_id}"

    @staticmethod
    def _ttl_ms(seconds: float) -> int:
        return max(1, round(seconds * 1000))

    def _check(self) -> None:
        if self._closed:
            raise RuntimeError("the coordinator is closed")
        if self._client is None:
            raise RuntimeError("the coordinator is not open (await open())")

    async def _call(self, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        self._check()
        assert self._client is not None
        try:
            return await fn(self._client)
        except rexc.RedisError as exc:
            if is_unavailable(exc):
                raise unavailable(log, self.description, exc) from exc
            raise
