"""The video store in this process's memory: the same contract as SQLite, nothing on disk.

Shipped (not a test helper) so that the services can be exercised, and a second engine checked against the
same contract tests, without a file or a thread. Nothing survives the process, and it cannot be shared
between processes: it is no store for a running service.

Atomicity: each method does all of its reading and writing without awaiting in between, so it is atomic
with respect to every other call on the event loop. Each call first yields to the loop once, as a call
to a real engine would, so that callers meet the same interleavings (and a caller cancelled at that point
has written nothing). What `save` keeps is the model's rule (`VideoRecord.merged_with`), as in SQLite.

The archive's indexes (`list_unarchived`, `list_expired`) are two dicts of id -> time kept in the same step as
the record (store/archive_index.py decides membership); a listing sorts only its index, never every record.
List's index (`list_page`) is one sorted list of (create_time, id) per owner, kept by claim and delete (the
two never change once a record exists).
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import secrets
from datetime import datetime

from videogen_server import errors
from videogen_server.domain.clock import utcnow
from videogen_server.domain.listing import SCAN_BUDGET, ListCursor, ListPage, ListQuery, matches
from videogen_server.domain.video import VideoRecord
from videogen_server.store.archive_index import expiring_at, unarchived_since

__all__ = ["MemoryVideoStore"]


class MemoryVideoStore:
    """VideoStore on two dicts: records by id, and the idempotency keys (owner, request_id) -> id."""

    def __init__(self) -> None:
        # Insertion order is kept (dicts are ordered, and a save replaces in place): it breaks ties between
        # equal create_times in `list_unfinished`, as SQLite's rowid does.
        self._records: dict[str, VideoRecord] = {}
        self._keys: dict[tuple[str, str], str] = {}
        # The archive's indexes, written with every record (see `_put`): id -> complete_time / expire_time.
        self._unarchived: dict[str, datetime] = {}
        self._expiring: dict[str, datetime] = {}
        # List's index: per owner, (create_time, id) ascending; a page walks it from the end.
        self._by_owner: dict[str, list[tuple[datetime, str]]] = {}
        self._secrets: dict[str, bytes] = {}
        # Uploads' keys: uri -> (key name, expire_time), expired entries pruned on each save.
        self._uploads: dict[str, tuple[str, datetime]] = {}
        self._opened = False
        self._closed = False

    async def __aenter__(self) -> MemoryVideoStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- lifecycle -------------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._closed:
            raise RuntimeError("the video store is closed")
        self._opened = True

    async def close(self) -> None:
        # Every call completes without awaiting once it has started: none is ever in flight here.
        self._closed = True
        self._records.clear()
        self._keys.clear()
        self._unarchived.clear()
        self._expiring.clear()
        self._by_owner.clear()
        self._uploads.clear()

    # -- VideoStore ------------------------------------------------------------------------------------

    async def check(self) -> None:
        self._check_open()

    async def get(self, video_id: str, *, owner: str | None = None) -> VideoRecord | None:
        await self._enter()
        record = self._records.get(video_id)
        if record is None or (owner is not None and record.owner != owner):
            return None
        return record

    async def claim(self, record: VideoRecord, *, max_active: int | None = None) -> tuple[VideoRecord, bool]:
        await self._enter()
        key = (record.owner, record.request_id)
        if record.request_id and key in self._keys:
            return self._records[self._keys[key]], False
        if record.id in self._records:
            raise ValueError(f"video id {record.id!r} already exists")
        if max_active is not None:
            # A scan (this engine is for tests and single runs), in the same step as the insert below.
            active = sum(
                1 for r in self._records.values() if r.owner == record.owner and not r.status.terminal
            )
            if active >= max_active:
                raise errors.ActiveLimitReached(record.owner, max_active)
        self._put(record)
        bisect.insort(self._by_owner.setdefault(record.owner, []), (record.create_time, record.id))
        if record.request_id:
            self._keys[key] = record.id
        return record, True

    async def save(self, record: VideoRecord) -> VideoRecord:
        await self._enter()
        stored = self._records.get(record.id)
        if stored is None:
            raise KeyError(record.id)
        if (stored.owner, stored.request_id) != (record.owner, record.request_id):
            raise ValueError(f"video {record.id!r}: owner and request_id cannot change")
        new = stored.merged_with(record)
        self._put(new)
        return new

    async def delete(self, video_id: str) -> None:
        await self._enter()
        record = self._records.pop(video_id, None)
        self._unarchived.pop(video_id, None)
        self._expiring.pop(video_id, None)
        if record is not None and record.request_id:
            self._keys.pop((record.owner, record.request_id), None)
        if record is not None:
            entries = self._by_owner.get(record.owner, [])
            at = bisect.bisect_left(entries, (record.create_time, record.id))
            if at < len(entries) and entries[at] == (record.create_time, record.id):
                del entries[at]

    async def list_unfinished(self) -> list[VideoRecord]:
        await self._enter()
        unfinished = [r for r in self._records.values() if not r.status.terminal]
        return sorted(unfinished, key=lambda r: r.create_time)  # stable: ties stay in insertion order

    async def list_unarchived(self, limit: int = 100) -> list[VideoRecord]:
        await self._enter()
        # nsmallest is stable: equal times stay in insertion order, as SQLite's rowid orders them.
        oldest = heapq.nsmallest(limit, self._unarchived.items(), key=lambda item: item[1])
        return [self._records[video_id] for video_id, _ in oldest]

    async def list_expired(self, now: datetime, limit: int = 100) -> list[VideoRecord]:
        await self._enter()
        due = ((video_id, at) for video_id, at in self._expiring.items() if at <= now)
        oldest = heapq.nsmallest(limit, due, key=lambda item: item[1])
        return [self._records[video_id] for video_id, _ in oldest]

    async def list_page(
        self,
        owner: str,
        query: ListQuery,
        *,
        after: ListCursor | None,
        limit: int,
        scan_limit: int = SCAN_BUDGET,
    ) -> ListPage:
        await self._enter()
        entries = self._by_owner.get(owner, [])
        # Entries strictly before the cursor in ascending order are the ones after it in the page's order.
        end = len(entries) if after is None else bisect.bisect_left(entries, (after.create_time, after.id))
        found: list[VideoRecord] = []
        budget = max(scan_limit, limit)
        for examined, position in enumerate(range(end - 1, -1, -1)):
            if len(found) >= limit:
                return ListPage(found)
            if examined >= budget:
                last_time, last_id = entries[position + 1]
                return ListPage(found, ListCursor(last_time, last_id))
            record = self._records[entries[position][1]]
            if matches(query, record):
                found.append(record)
        return ListPage(found)

    async def secret(self, name: str) -> bytes:
        await self._enter()
        return self._secrets.setdefault(name, secrets.token_bytes(32))

    async def save_upload(self, uri: str, key: str, expire_time: datetime) -> None:
        await self._enter()
        now = utcnow()
        for gone in [u for u, (_, at) in self._uploads.items() if at <= now]:
            del self._uploads[gone]
        if expire_time > now:
            self._uploads[uri] = (key, expire_time)

    async def upload_key(self, uri: str) -> str | None:
        await self._enter()
        kept = self._uploads.get(uri)
        return kept[0] if kept is not None and kept[1] > utcnow() else None

    # -- plumbing --------------------------------------------------------------------------------------

    def _put(self, record: VideoRecord) -> None:
        """Write `record` and its entries in the archive's indexes, in one step (no await)."""
        self._records[record.id] = record
        for index, at in (
            (self._unarchived, unarchived_since(record)),
            (self._expiring, expiring_at(record)),
        ):
            if at is None:
                index.pop(record.id, None)
            else:
                index[record.id] = at

    async def _enter(self) -> None:
        """Check the store is usable, yield to the loop once (as a real engine's call does), check again."""
        self._check_open()
        await asyncio.sleep(0)
        self._check_open()

    def _check_open(self) -> None:
        if not self._opened or self._closed:
            raise RuntimeError(
                "the video store is closed" if self._closed else "the video store is not open (await open())"
            )
