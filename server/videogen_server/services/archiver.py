"""The archiver: every output of a COMPLETED video is copied once into the output archive (issue 11), verified
(size against Runway's Content-Length, SHA-256 computed on the way) and recorded on the video.

Two ways in, both ending in `archive_video(video_id)`:

- **The hook**: the tracker calls `completed(record)` when it records a video's COMPLETED state (whoever
  polled it). The copy starts at once, long before Runway's URL (24-48 h) could expire.
- **The recovery scan** (`scan`, at start and every `scan_interval`, default 30 s): the store's
  `list_unarchived` index. It picks up what the hook could not: a restart or kill -9 mid-copy, a replica
  that died holding a copy's lease (expired after `lease_ttl`), videos that did not fit the bounded queue,
  copies left PENDING after their retries failed (archive down, Runway's CDN cut). 30 s keeps those late by
  at most a scan plus a lease, far inside the URL lifetime, for one indexed query per replica.

Exactly one replica copies a video: the copy holds a lease of its own, `archive:<video id>`, on the same
Coordinator as the pollers (a separate key, so that the poller's release at COMPLETED never drops it); it
is released when the copy is done, and a lease lost mid-copy cancels that copy (another replica may have
it now). The copy is idempotent anyway (a put overwrites with the same bytes; the store's merge moves an
output's state only forward), so two copies for a moment cost bandwidth, never correctness.

Bounds: `concurrency` workers (VIDEOGEN_ARCHIVE_CONCURRENCY, default 4) are the only code that copies, so
at most that many downloads and puts are in flight; the queue of videos waiting for a worker holds at most
`queue_limit` ids, 1024 by default (a video that does not fit is left to the scan: the store is the
queue). Downloads use the provider's download pool, which bootstrap sizes as the stream limit plus this
concurrency: the archiver's connections come on top of the StreamContent callers', never out of their
share. Memory per copy is what the archive buffers (obstore: two 8 MiB parts) plus a chunk in flight.

Failures, per output: a download cut mid-way or a size that does not match, and an archive that refuses
the write (`ArchiveUnavailable`), are retried `attempts` times with backoff, then left PENDING for the next
scan; an expired URL (`OutputExpired`) is replaced once by re-reading the task; a task Runway no longer
has (`UpstreamNotFound`), or an output URL that stays expired, makes the output LOST with its reason
(final). An output is recorded ARCHIVED only after `put` returned, and a put that fails or is cancelled
(shutdown, a lost lease) leaves nothing under the key and the output PENDING. Conversely an object found
under the key of a PENDING output is a whole verified copy (a copier died between its put and its save):
it is hashed again from the archive and recorded, with no request to Runway.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from videogen_server import errors
from videogen_server.domain.clock import utcnow
from videogen_server.domain.video import ArchiveState, OutputInfo, VideoRecord, VideoStatus, archive_key
from videogen_server.observability import logs
from videogen_server.services.leases import Leases
from videogen_server.services.ports import Coordinator, OutputArchive, OutputSource, VideoStore

log = logging.getLogger(__name__)

Announce = Callable[[VideoRecord], Awaitable[None]]

# Per upstream call made while copying (reading the task, opening the download): the copy as a whole has no
# deadline (a 256 MiB output takes what it takes), but every read has the download client's own timeout.
_CALL_TIMEOUT = 30.0
_QUEUE_LIMIT = 1024  # videos waiting for a copy, in memory
# Chunks at least this long are hashed on the archiver's hashing threads, smaller ones inline. Measured
# (2 shared cores): SHA-256 of 256 KiB takes 133 us of the loop's CPU inline, 17 us when handed to a thread;
# at 64 KiB the hand-off (57 us) costs the loop more than the hash itself (34 us).
_THREAD_MIN = 128 * 1024


def archive_lease(video_id: str) -> str:
    """The lease held while copying `video_id`'s outputs (and while the sweeper deletes them): its own key,
    not the poller's (the poller releases that one when the video ends, which is when copying starts)."""
    return f"archive:{video_id}"


class _CopyLater(Exception):
    """This output could not be copied now (retries spent on a retryable failure): it stays PENDING."""


class _Lost(Exception):
    """Runway no longer serves this output: record it LOST with this reason."""


class Archiver:
    def __init__(
        self,
        store: VideoStore,
        source: OutputSource,
        archive: OutputArchive,
        coordinator: Coordinator,
        *,
        announce: Announce,
        retention: float | None,
        concurrency: int = 4,
        scan_interval: float = 30.0,
        chunk_size: int = 256 * 1024,
        queue_limit: int | None = None,
        attempts: int = 3,
        retry_delay: float = 0.5,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._store = store
        self._source = source
        self._archive = archive
        self._announce = announce
        self._retention = retention  # seconds an archived output is kept; None: forever
        self._concurrency = concurrency
        self._scan_interval = scan_interval
        self._chunk_size = chunk_size
        self._attempts = attempts
        self._retry_delay = retry_delay
        self._leases = Leases(coordinator, on_lost=self._leases_lost)
        # SHA-256 of the bytes copied runs here, off the event loop that every RPC shares (hashlib releases
        # the GIL for large buffers). A copy has at most one chunk being hashed, so one thread per worker.
        self._hasher = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="archive-sha256")
        # Ids waiting for a worker (about 100 bytes each). Bounded: a burst of completions (100 videos at
        # once) is queued whole; a backlog past the bound is found again by the scan (the store is the queue).
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_limit or _QUEUE_LIMIT)
        self._wanted: set[str] = set()  # queued or being copied here: offered once
        self._copying: dict[str, asyncio.Task[VideoRecord | None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        # For tests and metrics: outputs copied and recorded ARCHIVED by this instance, and recorded LOST.
        self.archived = 0
        self.lost = 0

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers and the recovery scan (its first pass runs now)."""
        for n in range(self._concurrency):
            self._tasks.append(self._spawn(self._work(), f"archive worker {n}"))
        self._tasks.append(self._spawn(self._scan_forever(), "archive scan"))

    async def close(self) -> None:
        """Cancel the copies in flight (their puts abort: the outputs stay PENDING for whoever takes over),
        then release the leases held."""
        self._closed = True
        tasks: list[asyncio.Task[Any]] = [*self._tasks, *self._copying.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A cancelled copy's last hash may still be running: its thread ends after it, unwaited.
        self._hasher.shutdown(wait=False, cancel_futures=True)
        await self._leases.close()

    @property
    def in_flight(self) -> int:
        """Videos being copied now (at most `concurrency`)."""
        return len(self._copying)

    # -- ways in ---------------------------------------------------------------------------------------

    def completed(self, record: VideoRecord) -> None:
        """The tracker's hook: `record` was just recorded COMPLETED. Queue its copy (or leave it to the scan
        when the queue is full). Never blocks, never raises."""
        if record.status is VideoStatus.COMPLETED and _pending(record):
            self._offer(record.id)

    async def scan(self) -> int:
        """One recovery pass over the store's unarchived index: queue what is not queued here yet, as long
        as the queue has room. Returns how many were queued."""
        room = self._queue.maxsize - self._queue.qsize()
        if room <= 0 or self._closed:
            return 0
        queued = 0
        for record in await self._store.list_unarchived(limit=room + len(self._wanted)):
            if record.id in self._wanted:
                continue
            if not self._offer(record.id):
                break
            queued += 1
        if queued:
            log.info("archive scan: %d video(s) with outputs not archived yet", queued)
        return queued

    def _offer(self, video_id: str) -> bool:
        if self._closed:
            return False
        if video_id in self._wanted:
            return True
        try:
            self._queue.put_nowait(video_id)
        except asyncio.QueueFull:
            log.debug("archive queue full; video %s is left to the next scan", video_id)
            return False
        self._wanted.add(video_id)
        return True

    async def _scan_forever(self) -> None:
        while not self._closed:
            try:
                await self.scan()
            except errors.VideogenError as exc:
                log.warning("archive scan failed (%s); next in ~%.0fs", exc, self._scan_interval)
            except Exception:
                log.exception("archive scan failed unexpectedly; next in ~%.0fs", self._scan_interval)
            await asyncio.sleep(self._scan_interval * random.uniform(0.8, 1.2))

    async def _work(self) -> None:
        while True:
            video_id = await self._queue.get()
            try:
                # Each copy runs in a task of its own, so that losing its lease can cancel that copy alone.
                copy = asyncio.create_task(
                    self.archive_video(video_id), name=f"archive {video_id}", context=_own_context(video_id)
                )
                self._copying[video_id] = copy
                await asyncio.wait([copy])
                if not copy.cancelled() and (exc := copy.exception()) is not None:
                    if isinstance(exc, errors.VideogenError):
                        log.warning("archiving video %s failed (%s); the scan retries it", video_id, exc)
                    else:
                        log.error("archiving video %s failed unexpectedly", video_id, exc_info=exc)
            finally:
                self._copying.pop(video_id, None)
                self._wanted.discard(video_id)

    # -- the copy --------------------------------------------------------------------------------------

    async def archive_video(self, video_id: str) -> VideoRecord | None:
        """Copy every PENDING output of `video_id` under its archive lease; returns the record as stored
        after, or None when another instance holds the lease (it copies) or the video is not COMPLETED."""
        lease = archive_lease(video_id)
        if not await self._leases.acquire(lease):
            return None
        try:
            record = await self._store.get(video_id)
            if record is None or record.status is not VideoStatus.COMPLETED:
                return record
            for output in record.outputs:
                if output.archive is ArchiveState.PENDING:
                    record = await self._archive_output(record, output.index)
            return record
        finally:
            await self._leases.release([lease])

    async def _archive_output(self, record: VideoRecord, index: int) -> VideoRecord:
        """Copy one output and record the outcome (ARCHIVED or LOST); a copy to try later is logged and the
        record returned as it is."""
        try:
            found = await self._existing_copy(record, index)
            size, digest = found if found is not None else await self._copy(record, index)
        except _Lost as lost:
            log.warning("video %s output %d is lost: %s", record.id, index, lost)
            lost_output = dataclasses.replace(
                record.outputs[index], archive=ArchiveState.LOST, lost_reason=str(lost)
            )
            saved = await self._save_output(record, lost_output, record.expire_time)
            self.lost += 1
            return saved
        except _CopyLater as later:
            log.warning(
                "video %s output %d not archived yet (%s); the scan retries it", record.id, index, later
            )
            return record
        archived = dataclasses.replace(
            record.outputs[index], archive=ArchiveState.ARCHIVED, size_bytes=size, sha256=digest
        )
        # Video.expire_time: until when the content can be fetched, now the retention's end (None: forever).
        expire = None if self._retention is None else utcnow() + timedelta(seconds=self._retention)
        saved = await self._save_output(record, archived, expire)
        self.archived += 1  # counted once recorded (tests wait on it)
        log.info("video %s output %d archived (%d bytes, sha256 %s)", record.id, index, size, digest)
        return saved

    async def _save_output(
        self, record: VideoRecord, output: OutputInfo, expire_time: datetime | None
    ) -> VideoRecord:
        """Record one output's new archive state (the store's merge moves it only forward), and say so."""
        outputs = list(record.outputs)
        outputs[output.index] = output
        updated = record.replace(outputs=tuple(outputs), expire_time=expire_time, update_time=utcnow())
        saved = await self._store.save(updated)
        await self._announce(saved)
        return saved

    async def _existing_copy(self, record: VideoRecord, index: int) -> tuple[int, str] | None:
        """(size, sha256) of an object already under the output's key, hashed again from the archive; None
        when there is none. Such an object is a whole, verified copy (puts are atomic, and a copy commits
        only once its size matched Runway's): left by a copier that died between its put and its save, or
        found because the record was read here before another replica's save reached us (a store may answer
        terminal records from a short cache). Reading it back costs no request to Runway."""
        key = archive_key(record.id, index)
        tally = _Tally(self._hasher)
        try:
            # One request when there is none (the usual case): the read's own HEAD says so.
            async with self._archive.open_read(key) as out:
                async for piece in out.iter_chunks(self._chunk_size):
                    await tally.add(piece, out.total_size)  # hashed as handed out (a view): no copy
                await tally.finish(out.total_size)
        except errors.ArchiveObjectMissing:
            return None
        except errors.ArchiveUnavailable as exc:
            log.info("video %s output %d: no usable copy in the archive yet (%s)", record.id, index, exc)
            return None
        log.info("video %s output %d: found a whole copy in the archive; recording it", record.id, index)
        return tally.size, tally.hexdigest()

    async def _copy(self, record: VideoRecord, index: int) -> tuple[int, str]:
        """Stream the output from Runway into the archive; returns (size, sha256 hex) once `put` returned."""
        key = archive_key(record.id, index)
        url = await self._fresh_url(record, index)
        refreshed = False
        failures = 0
        while True:
            tally = _Tally(self._hasher)
            try:
                async with self._source.open_output(url, deadline=time.monotonic() + _CALL_TIMEOUT) as out:
                    content_type = out.content_type or record.outputs[index].content_type or "video/mp4"
                    chunks = tally.count(out.iter_chunks(self._chunk_size), out.total_size)
                    await self._archive.put(key, chunks, content_type=content_type)
                return tally.size, tally.hexdigest()
            except errors.OutputExpired:
                if refreshed:
                    raise _Lost(
                        "Runway's output URL stayed expired after the task was read again (its output is "
                        "no longer served)"
                    ) from None
                refreshed = True
                log.info(
                    "video %s output %d: URL expired before the copy; re-reading the task", record.id, index
                )
                url = await self._fresh_url(record, index)
            except (errors.UpstreamUnavailable, errors.ArchiveUnavailable, errors.DeadlineExceeded) as exc:
                failures += 1
                if failures >= self._attempts:
                    raise _CopyLater(f"{failures} attempts failed, the last: {exc}") from None
                log.warning(
                    "video %s output %d: copy failed after %d bytes (%s); retrying",
                    record.id,
                    index,
                    tally.size,
                    exc,
                )
                await asyncio.sleep(self._retry_delay * 2 ** (failures - 1) * random.uniform(1.0, 1.5))

    async def _fresh_url(self, record: VideoRecord, index: int) -> str:
        """The output's current signed URL, from the task (URLs are never stored)."""
        try:
            task = await self._source.get_task(
                record.upstream_id, key=record.runway_key, deadline=time.monotonic() + _CALL_TIMEOUT
            )
        except errors.UpstreamNotFound:
            raise _Lost(
                "Runway no longer has the task (deleted or expired) before its output was archived"
            ) from None
        except (errors.UpstreamUnavailable, errors.DeadlineExceeded) as exc:
            raise _CopyLater(f"could not read the task from Runway: {exc}") from None
        if task.video_status is not VideoStatus.COMPLETED or index >= len(task.outputs):
            raise _Lost(f"Runway no longer lists output {index} of the task (status {task.status})")
        return task.outputs[index]

    @property
    def leases(self) -> Leases:
        """The archive leases of this process (`archive:<id>`), for the retention sweeper to share."""
        return self._leases

    def _leases_lost(self, leases: set[str]) -> None:
        """Copy leases the keeper could not renew: another replica may copy those videos now, so ours stop
        (their puts abort; nothing is recorded)."""
        for lease in leases:
            copy = self._copying.get(lease.removeprefix("archive:"))
            if copy is not None:
                log.warning("lost the archive lease of %s; stopping its copy", lease)
                copy.cancel()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        # Work of the whole archiver: a logging context of its own, not that of whichever RPC started it.
        return asyncio.create_task(coro, name=name, context=contextvars.Context())


class _Tally:
    """Counts and hashes one copy's bytes in order; raises when the count is not the size announced
    (`expected`: Runway's Content-Length, None when not known), so a short copy is never committed (the
    archive's put is atomic).

    The SHA-256 runs on `hasher`'s threads, off the event loop: a chunk's update is handed over and runs
    while that chunk goes on into the archive; the next chunk waits for it first, so the updates run one at
    a time in order and the digest is the one hashing inline gives. Small chunks are hashed inline
    (`_THREAD_MIN`). `hexdigest` is read after `finish` (which `count` awaits at its end)."""

    def __init__(self, hasher: Executor) -> None:
        self.size = 0
        self._hasher = hasher
        self._hash = hashlib.sha256()
        self._hashing: asyncio.Future[None] | None = None  # the previous chunk's update, on a thread

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    async def add(self, piece: bytes | memoryview, expected: int | None) -> None:
        """Count `piece` and start hashing it (the bytes must not change: bytes, or a read-only view)."""
        self.size += len(piece)
        if expected is not None and self.size > expected:
            raise errors.UpstreamUnavailable(
                f"download longer than announced: {self.size} bytes of {expected}"
            )
        await self._hashed()
        if len(piece) < _THREAD_MIN:
            self._hash.update(piece)
        else:
            self._hashing = asyncio.get_running_loop().run_in_executor(self._hasher, self._hash.update, piece)

    async def finish(self, expected: int | None) -> None:
        """Every chunk was added: wait for the last hash, check the count."""
        await self._hashed()
        # Without a Content-Length (chunked transfer) the HTTP layer still tells a cut body from its end.
        if expected is not None and self.size != expected:
            raise errors.UpstreamUnavailable(f"download cut short: {self.size} bytes of {expected}")

    async def count(
        self, chunks: AsyncIterator[bytes | memoryview], expected: int | None
    ) -> AsyncIterator[bytes]:
        """`chunks` passed on (to the archive's put) as they are counted and hashed."""
        async for piece in chunks:
            await self.add(piece, expected)
            # The relay's reads are bytes already; a view (what an archive read hands out) is copied once.
            yield piece if isinstance(piece, bytes) else bytes(piece)
        await self.finish(expected)

    async def _hashed(self) -> None:
        if self._hashing is not None:
            hashing, self._hashing = self._hashing, None
            await hashing


def _pending(record: VideoRecord) -> bool:
    return any(o.archive is ArchiveState.PENDING for o in record.outputs)


def _own_context(video_id: str) -> contextvars.Context:
    context = contextvars.Context()
    context.run(logs.bind_video, video_id)
    return context
