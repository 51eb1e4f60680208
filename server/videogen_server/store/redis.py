"""The shared job record store: Redis, through redis-py's asyncio API, for several replicas of the service.

The same contract as SQLite (services/ports.py), held across processes by Redis itself: every write is one
Lua script (run atomically by Redis) or one WATCH/MULTI transaction, never a read in Python followed by an
unguarded write.

Keys (``prefix`` is ``videogen:`` unless given):
- ``{prefix}video:{id}``: a hash with ``owner``, ``request_id``, ``status`` and ``data`` (the record as JSON,
  store/codec.py). The owner beside the data lets an owner-scoped `get` compare it inside Redis.
- ``{prefix}key:{len(owner)}:{owner}:{request_id}`` -> the video id: the idempotency key. The owner's
  length (in UTF-8 bytes, as the Lua delete script counts it) makes it unambiguous when owner or request_id
  contain ':'.
- ``{prefix}active:{len(owner)}:{owner}`` (the length in bytes, too): a set of that owner's ids not in a
  terminal state, kept in the same script or transaction as the record (claim adds, a terminal save and
  delete remove); `claim` with ``max_active`` counts it (SCARD) in the claim script itself, so the check
  and the insert are one atomic step for every replica. Filled once from ``unfinished`` for data written
  before it existed (``{prefix}active:ready`` marks that done); at the cap, the claim first drops ids that
  ``unfinished`` no longer holds (finished by a replica of an older version during a rolling deploy).
- ``{prefix}unfinished``: a sorted set of the ids not in a terminal state, scored by an insertion counter
  (``{prefix}seq``), kept in the same script or transaction as the record; `list_unfinished` reads it.
- ``{prefix}unarchived``: a sorted set of the COMPLETED ids with an output still PENDING, scored by complete
  time (epoch seconds), and ``{prefix}expiring``: the ids with an ARCHIVED output, scored by expire_time
  (store/archive_index.py decides both): the archive's indexes (issue 11), kept in the same script or
  transaction as the record; `list_unarchived` and `list_expired` read a range of them, never every record.
  Filled once from the records for data written before them (``{prefix}archive-index:ready`` marks that
  done): a SCAN at `open`, each entry written only if the record is still what was read.
- ``{prefix}by-owner:{len(owner)}:{owner}`` (the length in bytes): List's index (issue 12), a sorted set of
  that owner's videos, every score 0, each member ``<create_time as fixed-width UTC text>|<id>`` so that
  lexical order is (create_time, id) order; a page is one ZREVRANGEBYLEX from the cursor, read in a script
  that checks each entry's status and model (hash fields) and returns the matches' data: one snapshot, at
  most a scan budget of entries (domain/listing.py). Written by the claim script with the record (which
  also stores the member as the hash's ``listed`` field and the ``model``), removed by the delete script;
  saves never touch it (owner, create_time and id never change). Filled once for records written before it
  existed (``{prefix}list-index:ready`` marks that done): a SCAN at `open`, like the archive's indexes. A
  replica of an older version still running during a rolling deploy writes records without an entry:
  those are not listed (they remain readable by Get) until the marker is deleted and a replica restarts.
- ``{prefix}secret:{name}``: named random secrets (hex), made once with SET NX (List's page token key).
- ``{prefix}upload:{uri}`` -> the name of the key that uploaded that runway:// URI (issue 12), SET with a PX
  expiry at the URI's expire_time: Redis drops it when the URI stops working, so nothing needs pruning.
The scripts name keys they compute (the record of a held idempotency key): fine on one Redis (or a
primary with replicas), not on Redis Cluster.

Durability: a call that returned has had Redis acknowledge its write; that write is on disk only with
``appendonly yes`` and ``appendfsync always`` (README, "Redis store"). `open` logs a warning when Redis
says otherwise (and says nothing when CONFIG is forbidden, as on managed Redis).

Failures: Redis unreachable, timing out, loading its data set after a restart, read-only (a replica) or
unable to persist (MISCONF) -> `errors.StoreUnavailable` (UNAVAILABLE with RetryInfo), never INTERNAL.
Connecting and each reply are bounded (`connect_timeout` 1 s, `socket_timeout` 2 s), so a dead or hung
Redis fails a call within about two seconds, not at the caller's deadline. A pooled connection found broken
is retried once on a fresh one (a restarted Redis costs no error); every script is safe to run twice (a
`claim` that finds its key held by its own id reports it inserted).

A short cache of terminal records only: a terminal record never changes status again, only output metadata
(sizes, and the archive's state) does, so `get` may answer from memory for `TERMINAL_CACHE_TTL_S` (1 s) after
this process last read or wrote it. Across replicas, output metadata saved by another process can therefore
be up to that long old here; everything else (a running video, a claim, a save) always goes to Redis. An
owner-scoped `get` of another owner's cached video is a miss and takes the same round trip as an unknown id.
(Get of a COMPLETED video is the hot read: without the cache each one cost a Redis round trip and about
twice the server CPU of a health check; bench/replicas.py.)
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Final, TypeVar

import redis.asyncio as aioredis
import redis.exceptions as rexc

from videogen_server import errors
from videogen_server.config import redact_url
from videogen_server.domain.clock import parse_time, utcnow
from videogen_server.domain.listing import SCAN_BUDGET, ListCursor, ListPage, ListQuery, statuses_of
from videogen_server.domain.video import VideoRecord, VideoStatus
from videogen_server.store.archive_index import expiring_at, index_score, index_text, unarchived_since
from videogen_server.store.codec import decode_record, encode_record
from videogen_server.store.redis_connection import (
    CONNECT_TIMEOUT_S,
    DEFAULT_PREFIX,
    SOCKET_TIMEOUT_S,
    connect,
    is_unavailable,
    unavailable,
)

__all__ = ["DEFAULT_PREFIX", "RedisVideoStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long a terminal record read or written here may be answered from memory (see the module docstring).
TERMINAL_CACHE_TTL_S: Final = 1.0
TERMINAL_CACHE_MAX: Final = 10_000

# KEYS: record, idempotency key ('' for none), unfinished set, seq counter, the owner's active set, the
#       unarchived index, the expiring index, the owner's List index
# ARGV: id, owner, request_id, status, data, terminal ('1'/'0'), record key prefix, max_active ('' for none),
#       unarchived score, expiring score ('' for not indexed), List index member, model
# Returns {1, data}: inserted (or this very id already holds the key: a retried call);
#         {0, data}: the key is held by another video, whose data is returned; {-1}: the id exists;
#         {-2}: the owner has max_active unfinished videos already (nothing written but the set's pruning).
_CLAIM: Final = """
if KEYS[2] ~= '' then
  local held = redis.call('GET', KEYS[2])
  if held then
    if held == ARGV[1] then
      local mine = redis.call('HGET', KEYS[1], 'data')
      if mine then return {1, mine} end
    else
      local theirs = redis.call('HGET', ARGV[7] .. held, 'data')
      if theirs then return {0, theirs} end
    end
    -- a key whose record is gone (never written so by this store): taken over below
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1} end
if ARGV[8] ~= '' and redis.call('SCARD', KEYS[5]) >= tonumber(ARGV[8]) then
  -- At the cap only: drop ids the unfinished index no longer holds (finished by a replica of a version
  -- without these sets), then count again. The index is kept by every version, so it is the truth.
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[5])) do
    if not redis.call('ZSCORE', KEYS[3], id) then redis.call('SREM', KEYS[5], id) end
  end
  if redis.call('SCARD', KEYS[5]) >= tonumber(ARGV[8]) then return {-2} end
end
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'request_id', ARGV[3], 'status', ARGV[4], 'data', ARGV[5],
  'listed', ARGV[11], 'model', ARGV[12])
redis.call('ZADD', KEYS[8], 0, ARGV[11])
if KEYS[2] ~= '' then redis.call('SET', KEYS[2], ARGV[1]) end
if ARGV[6] == '0' then
  redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[4]), ARGV[1])
  redis.call('SADD', KEYS[5], ARGV[1])
end
if ARGV[9] ~= '' then redis.call('ZADD', KEYS[6], ARGV[9], ARGV[1]) end
if ARGV[10] ~= '' then redis.call('ZADD', KEYS[7], ARGV[10], ARGV[1]) end
return {1, ARGV[5]}
"""

# The common save: the stored record is not terminal and of the same owner and key, so the model's rule
# (`merged_with`) is "the new record, whole": written here in one step. Anything else returns 0 and takes
# the WATCH/MULTI path, which runs the rule in Python.
# KEYS: record, unfinished set, the owner's active set, the unarchived index, the expiring index
# ARGV: owner, request_id, status, data, terminal ('1'/'0'), the terminal statuses, id, unarchived score,
#       expiring score ('' for not indexed: removed)
_SAVE_FAST: Final = """
local cur = redis.call('HMGET', KEYS[1], 'owner', 'request_id', 'status')
if not cur[1] or cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return 0 end
for s in string.gmatch(ARGV[6], '[^,]+') do
  if cur[3] == s then return 0 end
end
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'data', ARGV[4])
if ARGV[5] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[7])
  redis.call('SREM', KEYS[3], ARGV[7])
end
if ARGV[8] ~= '' then redis.call('ZADD', KEYS[4], ARGV[8], ARGV[7])
else redis.call('ZREM', KEYS[4], ARGV[7]) end
if ARGV[9] ~= '' then redis.call('ZADD', KEYS[5], ARGV[9], ARGV[7])
else redis.call('ZREM', KEYS[5], ARGV[7]) end
return 1
"""

# KEYS: record; ARGV: owner. The record's data if it is that owner's, else nil: the same one round trip,
# and the same answer, for another owner's video and an unknown id.
_GET_OWNED: Final = """
local o = redis.call('HGET', KEYS[1], 'owner')
if o and o == ARGV[1] then return redis.call('HGET', KEYS[1], 'data') end
return false
"""

# KEYS: record, unfinished set, unarchived index, expiring index; ARGV: id, key prefix. The record, its
# idempotency key (if it still points at this id) and its index entries, together.
_DELETE: Final = """
local cur = redis.call('HMGET', KEYS[1], 'owner', 'request_id', 'listed')
if not cur[1] then return 0 end
if cur[3] then redis.call('ZREM', ARGV[2] .. 'by-owner:' .. string.len(cur[1]) .. ':' .. cur[1], cur[3]) end
if cur[2] ~= '' then
  local k = ARGV[2] .. 'key:' .. string.len(cur[1]) .. ':' .. cur[1] .. ':' .. cur[2]
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('SREM', ARGV[2] .. 'active:' .. string.len(cur[1]) .. ':' .. cur[1], ARGV[1])
return 1
"""

# KEYS: unfinished set, the "done" marker; ARGV: record key prefix, key prefix. Once per data set: every
# unfinished record into its owner's active set (data written before those sets existed).
_FILL_ACTIVE: Final = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
for i, id in ipairs(ids) do
  local o = redis.call('HGET', ARGV[1] .. id, 'owner')
  if o then redis.call('SADD', ARGV[2] .. 'active:' .. string.len(o) .. ':' .. o, id) end
end
redis.call('SET', KEYS[2], '1')
return #ids
"""

# KEYS: unfinished set; ARGV: record key prefix. Every unfinished record's data, in insertion order, read in
# one step (a consistent scan).
_LIST_UNFINISHED: Final = """
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for i, id in ipairs(ids) do
  local d = redis.call('HGET', ARGV[1] .. id, 'data')
  if d then out[#out + 1] = d end
end
return out
"""

# KEYS: an archive index (sorted set); ARGV: record key prefix, limit, the highest score ('+inf': any).
# The data of the first `limit` ids scored up to that, lowest first, read in one step.
_LIST_INDEX: Final = """
-- ZRANGEBYSCORE rather than ZRANGE ... BYSCORE: the same on Redis before 6.2.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for i, id in ipairs(ids) do
  local d = redis.call('HGET', ARGV[1] .. id, 'data')
  if d then out[#out + 1] = d end
end
return out
"""


def _index_scores(record: VideoRecord) -> tuple[str, str]:
    """The record's scores in the unarchived and expiring indexes ('' for not indexed), as Redis reads a
    score (repr: the float exactly)."""
    since, until = unarchived_since(record), expiring_at(record)
    return (
        "" if since is None else repr(index_score(since)),
        "" if until is None else repr(index_score(until)),
    )


# KEYS: record, unarchived index, expiring index; ARGV: the record's data as read, unarchived score, expiring
# score ('' for none), id. Index the record as read only if it is still that (a save since has indexed it).
_INDEX_IF_UNCHANGED: Final = """
if redis.call('HGET', KEYS[1], 'data') ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4]) end
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4]) end
return 1
"""

# KEYS: the owner's List index; ARGV: record key prefix, the highest member ('+', or '(' and the cursor's
# member: exclusive), limit, scan budget, the statuses wanted (comma-separated, '' for any), '1' to match
# the model, the model. Returns {scanned_to, data...}: scanned_to is the last member examined when the budget
# ran out with entries left, else ''. One script: the page is one snapshot. A record without a 'model' field
# (none is written so; kept for safety) is checked by its data.
_LIST_PAGE: Final = """
local limit, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local members = redis.call('ZREVRANGEBYLEX', KEYS[1], ARGV[2], '-', 'LIMIT', 0, budget + 1)
local wanted = {}
for s in string.gmatch(ARGV[5], '[^,]+') do wanted[s] = true end
local out = {''}
local found, examined = 0, 0
for i, m in ipairs(members) do
  if found >= limit then return out end
  if examined >= budget then
    out[1] = members[i - 1]
    return out
  end
  examined = examined + 1
  local id = string.sub(m, string.find(m, '|', 1, true) + 1)
  local h = redis.call('HMGET', ARGV[1] .. id, 'status', 'model', 'data')
  if h[3] then
    local ok = ARGV[5] == '' or wanted[h[1]] == true
    if ok and ARGV[6] == '1' then
      local model = h[2]
      if not model then model = cjson.decode(h[3])['model'] end
      ok = model == ARGV[7]
    end
    if ok then
      out[#out + 1] = h[3]
      found = found + 1
    end
  end
end
return out
"""

# KEYS: record, the owner's List index; ARGV: member, model. Index a record written before the List index
# existed (`open`'s one-time fill); a record deleted meanwhile is skipped.
_LIST_INDEX_ONE: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'listed', ARGV[1], 'model', ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
"""

# KEYS: the secret's key; ARGV: a fresh secret. The one stored first wins, for every caller.
_SECRET: Final = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""


def _list_member(record: VideoRecord) -> str:
    """The record's member in its owner's List index: lexical order is (create_time, id) order."""
    return _member(record.create_time, record.id)


def _member(create_time: datetime, video_id: str) -> str:
    return f"{index_text(create_time)}|{video_id}"


# The terminal statuses, for the fast save's check in Lua ("COMPLETED,FAILED,CANCELLED").
_TERMINAL: Final = ",".join(s.value for s in VideoStatus if s.terminal)


class RedisVideoStore:
    """VideoStore on Redis. See the module docstring for keys, durability and failures."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        socket_timeout: float = SOCKET_TIMEOUT_S,
    ) -> None:
        self._url = url
        self._prefix = prefix
        self._connect_timeout = connect_timeout
        self._socket_timeout = socket_timeout
        self._client: aioredis.Redis | None = None
        self._closed = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._unfinished = f"{prefix}unfinished"
        self._seq = f"{prefix}seq"
        # id -> (terminal record, monotonic time it was read or written here); insertion-ordered for eviction.
        self._terminal: dict[str, tuple[VideoRecord, float]] = {}
        self._unarchived = f"{prefix}unarchived"
        self._expiring = f"{prefix}expiring"

    @property
    def description(self) -> str:
        """The store for a log line: its URL without credentials."""
        return redact_url(self._url)

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def url(self) -> str:
        return self._url

    async def __aenter__(self) -> RedisVideoStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- lifecycle -------------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._closed:
            raise RuntimeError("the video store is closed")
        if self._client is not None:
            return
        # One retry on a fresh connection for a connection error only (store/redis_connection.py): a pooled
        # connection that a Redis restart broke costs no error, and a Redis that does not answer fails a
        # call within `socket_timeout`, not a multiple of it.
        client = connect(
            self._url, connect_timeout=self._connect_timeout, socket_timeout=self._socket_timeout
        )
        self._scripts = {
            name: client.register_script(text)
            for name, text in (
                ("claim", _CLAIM),
                ("save_fast", _SAVE_FAST),
                ("get_owned", _GET_OWNED),
                ("delete", _DELETE),
                ("list_unfinished", _LIST_UNFINISHED),
                ("list_index", _LIST_INDEX),
                ("fill_active", _FILL_ACTIVE),
                ("index_if_unchanged", _INDEX_IF_UNCHANGED),
                ("list_page", _LIST_PAGE),
                ("list_index_one", _LIST_INDEX_ONE),
                ("secret", _SECRET),
            )
        }
        self._client = client
        await self._check_durability()
        await self._fill_active()
        await self._backfill("archive-index:ready", self._index_batch, "checked for the archive")
        await self._backfill("list-index:ready", self._list_index_batch, "indexed for List")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._idle.wait()  # the calls in flight finish first
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _check_durability(self) -> None:
        """Warn when Redis would not keep what it acknowledged; never fail (CONFIG may be forbidden)."""
        assert self._client is not None
        try:
            appendonly = await self._client.config_get("appendonly")
            fsync = await self._client.config_get("appendfsync")
        except rexc.ResponseError:  # CONFIG is forbidden (managed Redis): nothing to say
            return
        except (rexc.ConnectionError, rexc.TimeoutError) as exc:
            log.warning(
                "store %s: Redis does not answer (%s); calls fail UNAVAILABLE until it does",
                self.description,
                type(exc).__name__,
            )
            return
        if appendonly.get("appendonly") != "yes":
            log.warning(
                "store %s: Redis has appendonly off: a Redis crash loses acknowledged videos and "
                "idempotency keys (set appendonly yes, appendfsync always)",
                self.description,
            )
        elif fsync.get("appendfsync") != "always":
            log.warning(
                "store %s: Redis has appendfsync %s: a Redis crash may lose up to a second of "
                "acknowledged writes (appendfsync always keeps them)",
                self.description,
                fsync.get("appendfsync"),
            )

    async def _fill_active(self) -> None:
        """Build the per-owner active sets from the unfinished index, once per data set (see the module
        docstring). A Redis that does not answer now is left for the next start (and logged)."""
        try:
            await self._call(
                lambda c: self._scripts["fill_active"](
                    keys=[self._unfinished, f"{self._prefix}active:ready"],
                    args=[self._record_key(""), self._prefix],
                    client=c,
                )
            )
        except errors.StoreUnavailable:
            log.warning(
                "store %s: per-caller counts not checked at start (Redis did not answer)", self.description
            )

    async def _backfill(
        self, marker: str, batch: Callable[[aioredis.Redis, list[str]], Awaitable[None]], what: str
    ) -> None:
        """Run `batch` over every stored record's key once per data set (the `marker` key says it was done),
        for an index that records written before it existed lack (see the module docstring). A SCAN in
        batches of 500, not one long script: Redis keeps serving meanwhile. A Redis that does not answer now
        is left for the next start (and logged)."""
        ready = f"{self._prefix}{marker}"

        async def fill(client: aioredis.Redis) -> None:
            if await client.exists(ready):
                return
            keys: list[str] = []
            async for key in client.scan_iter(match=f"{self._record_key('')}*", count=500):
                keys.append(str(key))
                if len(keys) >= 500:
                    await batch(client, keys)
                    keys = []
            await batch(client, keys)
            await client.set(ready, "1")

        try:
            await self._call(fill)
        except errors.StoreUnavailable:
            log.warning(
                "store %s: older videos not %s at start (Redis did not answer)", self.description, what
            )

    async def _index_batch(self, client: aioredis.Redis, keys: list[str]) -> None:
        """One SCAN batch: the records read in one pipeline, the COMPLETED ones indexed in a second (each
        entry still its own compare-and-write script): two round trips a batch, not one per record, which
        on a large data set and a Redis across a network is what the first start after the upgrade takes."""
        if not keys:
            return
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, ["status", "data"])
            rows = await pipe.execute()
        async with client.pipeline(transaction=False) as pipe:
            for key, (status, data) in zip(keys, rows, strict=True):
                if status != VideoStatus.COMPLETED.value or data is None:
                    continue
                record = decode_record(str(data))
                since, until = _index_scores(record)
                if since or until:
                    # Queued on the pipeline (which loads the script first if Redis lacks it), sent below.
                    await self._scripts["index_if_unchanged"](
                        keys=[key, self._unarchived, self._expiring],
                        args=[data, since, until, record.id],
                        client=pipe,
                    )
            await pipe.execute()

    async def _list_index_batch(self, client: aioredis.Redis, keys: list[str]) -> None:
        if not keys:
            return
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, ["listed", "data"])
            rows = await pipe.execute()
        async with client.pipeline(transaction=False) as pipe:
            for key, (listed, data) in zip(keys, rows, strict=True):
                if listed is not None or data is None:
                    continue  # indexed by its claim already, or gone
                record = decode_record(str(data))
                await self._scripts["list_index_one"](
                    keys=[key, self._owner_index(record.owner)],
                    args=[_list_member(record), record.model],
                    client=pipe,
                )
            await pipe.execute()

    # -- VideoStore ------------------------------------------------------------------------------------

    async def check(self) -> None:
        await self._call(lambda c: c.ping())

    async def get(self, video_id: str, *, owner: str | None = None) -> VideoRecord | None:
        cached = self._terminal.get(video_id)
        if cached is not None:
            record, at = cached
            if time.monotonic() - at < TERMINAL_CACHE_TTL_S:
                # Another owner's cached record is a miss, like an unknown id (the same round trip below).
                if owner is None or record.owner == owner:
                    return record
            else:
                del self._terminal[video_id]
        key = self._record_key(video_id)
        if owner is None:
            data = await self._call(lambda c: c.hget(key, "data"))
        else:
            data = await self._call(lambda c: self._scripts["get_owned"](keys=[key], args=[owner], client=c))
        if data is None:
            return None
        return self._remember(decode_record(str(data)))

    def _remember(self, record: VideoRecord) -> VideoRecord:
        """Keep a terminal record for the cache's short life (see the module docstring); forget any other."""
        self._terminal.pop(record.id, None)  # re-inserted last: the oldest entries are evicted first
        if record.status.terminal:
            self._terminal[record.id] = (record, time.monotonic())
            while len(self._terminal) > TERMINAL_CACHE_MAX:
                del self._terminal[next(iter(self._terminal))]
        return record

    async def claim(self, record: VideoRecord, *, max_active: int | None = None) -> tuple[VideoRecord, bool]:
        idem = self._idem_key(record.owner, record.request_id) if record.request_id else ""
        data = encode_record(record)
        reply = await self._call(
            lambda c: self._scripts["claim"](
                keys=[
                    self._record_key(record.id),
                    idem,
                    self._unfinished,
                    self._seq,
                    self._active_key(record.owner),
                    self._unarchived,
                    self._expiring,
                    self._owner_index(record.owner),
                ],
                args=[
                    record.id,
                    record.owner,
                    record.request_id,
                    record.status.value,
                    data,
                    "1" if record.status.terminal else "0",
                    self._record_key(""),
                    "" if max_active is None else str(max_active),
                    *_index_scores(record),
                    _list_member(record),
                    record.model,
                ],
                client=c,
            )
        )
        if int(reply[0]) == -2:
            raise errors.ActiveLimitReached(record.owner, max_active or 0)
        if int(reply[0]) < 0:
            raise ValueError(f"video id {record.id!r} already exists")
        if int(reply[0]) == 1:
            return (record if reply[1] == data else decode_record(reply[1])), True
        return decode_record(reply[1]), False

    async def save(self, record: VideoRecord) -> VideoRecord:
        key = self._record_key(record.id)
        data = encode_record(record)
        done = await self._call(
            lambda c: self._scripts["save_fast"](
                keys=[
                    key,
                    self._unfinished,
                    self._active_key(record.owner),
                    self._unarchived,
                    self._expiring,
                ],
                args=[
                    record.owner,
                    record.request_id,
                    record.status.value,
                    data,
                    "1" if record.status.terminal else "0",
                    _TERMINAL,
                    record.id,
                    *_index_scores(record),
                ],
                client=c,
            )
        )
        if int(done) == 1:
            return self._remember(record)
        self._terminal.pop(record.id, None)  # whatever the merge keeps, read it from Redis next time
        return self._remember(await self._call(lambda c: self._save_merge(c, record)))

    async def _save_merge(self, client: aioredis.Redis, record: VideoRecord) -> VideoRecord:
        """The read-merge-write under WATCH: retried when another writer changed the record meanwhile."""
        key = self._record_key(record.id)
        while True:
            async with client.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    owner, request_id, data = await pipe.hmget(key, ["owner", "request_id", "data"])
                    # decode_responses: str, or None for a missing field
                    if data is None:
                        raise KeyError(record.id)
                    if (owner, request_id) != (record.owner, record.request_id):
                        raise ValueError(f"video {record.id!r}: owner and request_id cannot change")
                    stored = decode_record(str(data))
                    new = stored.merged_with(record)
                    if new == stored:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return stored
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(key, mapping={"status": new.status.value, "data": encode_record(new)})
                    if new.status.terminal:
                        pipe.zrem(self._unfinished, new.id)
                        pipe.srem(self._active_key(new.owner), new.id)
                    for index, score in zip(
                        (self._unarchived, self._expiring), _index_scores(new), strict=True
                    ):
                        if score:
                            pipe.zadd(index, {new.id: score})
                        else:
                            pipe.zrem(index, new.id)
                    await pipe.execute()
                    return new
                except rexc.WatchError:
                    continue  # another writer came first: read again

    async def delete(self, video_id: str) -> None:
        self._terminal.pop(video_id, None)
        await self._call(
            lambda c: self._scripts["delete"](
                keys=[self._record_key(video_id), self._unfinished, self._unarchived, self._expiring],
                args=[video_id, self._prefix],
                client=c,
            )
        )

    async def list_unfinished(self) -> list[VideoRecord]:
        rows = await self._call(
            lambda c: self._scripts["list_unfinished"](
                keys=[self._unfinished], args=[self._record_key("")], client=c
            )
        )
        records = [decode_record(d) for d in rows]
        records.sort(key=lambda r: r.create_time)  # stable: ties stay in insertion order
        return records

    async def list_unarchived(self, limit: int = 100) -> list[VideoRecord]:
        records = await self._list_index(self._unarchived, limit, "+inf")
        # Scores are floats (microseconds may round): the exact order is the records' own (stable).
        records.sort(key=lambda r: unarchived_since(r) or r.update_time)
        return records

    async def list_expired(self, now: datetime, limit: int = 100) -> list[VideoRecord]:
        records = await self._list_index(self._expiring, limit, repr(index_score(now)))
        # The exact times decide, not the float scores (a rounding may let in one due a microsecond later).
        due = [r for r in records if (at := expiring_at(r)) is not None and at <= now]
        due.sort(key=lambda r: expiring_at(r) or now)
        return due

    async def _list_index(self, index: str, limit: int, highest: str) -> list[VideoRecord]:
        if limit <= 0:
            return []
        rows = await self._call(
            lambda c: self._scripts["list_index"](
                keys=[index], args=[self._record_key(""), limit, highest], client=c
            )
        )
        return [decode_record(d) for d in rows]

    async def list_page(
        self,
        owner: str,
        query: ListQuery,
        *,
        after: ListCursor | None,
        limit: int,
        scan_limit: int = SCAN_BUDGET,
    ) -> ListPage:
        highest = "+" if after is None else "(" + _member(after.create_time, after.id)
        statuses = "" if query.status is None else ",".join(s.value for s in statuses_of(query.status))
        reply = await self._call(
            lambda c: self._scripts["list_page"](
                keys=[self._owner_index(owner)],
                args=[
                    self._record_key(""),
                    highest,
                    limit,
                    max(scan_limit, limit),
                    statuses,
                    "0" if query.model is None else "1",
                    query.model or "",
                ],
                client=c,
            )
        )
        scanned_to, *rows = (str(item) for item in reply)
        records = [decode_record(d) for d in rows]
        if not scanned_to:
            return ListPage(records)
        at, _, video_id = scanned_to.partition("|")
        return ListPage(records, ListCursor(parse_time(at), video_id))

    async def secret(self, name: str) -> bytes:
        key = f"{self._prefix}secret:{name}"
        value = await self._call(
            lambda c: self._scripts["secret"](keys=[key], args=[secrets.token_hex(32)], client=c)
        )
        return bytes.fromhex(str(value))

    async def save_upload(self, uri: str, key: str, expire_time: datetime) -> None:
        left_ms = int((expire_time - utcnow()).total_seconds() * 1000)
        if left_ms <= 0:
            return  # already expired: nothing to remember (and PX must be positive)
        await self._call(lambda c: c.set(self._upload_key(uri), key, px=left_ms))

    async def upload_key(self, uri: str) -> str | None:
        value = await self._call(lambda c: c.get(self._upload_key(uri)))
        return None if value is None else str(value)

    # -- plumbing --------------------------------------------------------------------------------------

    def _upload_key(self, uri: str) -> str:
        return f"{self._prefix}upload:{uri}"

    def _record_key(self, video_id: str) -> str:
        return f"{self._prefix}video:{video_id}"

    def _owner_index(self, owner: str) -> str:
        # In UTF-8 bytes, as for the idempotency key: the delete script names it with string.len.
        return f"{self._prefix}by-owner:{len(owner.encode())}:{owner}"

    def _active_key(self, owner: str) -> str:
        # In UTF-8 bytes, as for the idempotency key: the delete and fill scripts name it with string.len.
        return f"{self._prefix}active:{len(owner.encode())}:{owner}"

    def _idem_key(self, owner: str, request_id: str) -> str:
        # The length in UTF-8 bytes: the delete script builds the same key with Lua's string.len (bytes).
        return f"{self._prefix}key:{len(owner.encode())}:{owner}:{request_id}"

    async def _call(self, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        if self._client is None or self._closed:
            raise RuntimeError(
                "the video store is closed" if self._closed else "the video store is not open (await open())"
            )
        self._in_flight += 1
        self._idle.clear()
        try:
            return await fn(self._client)
        except rexc.RedisError as exc:
            if is_unavailable(exc):
                raise unavailable(log, self.description, exc) from exc
            raise
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
