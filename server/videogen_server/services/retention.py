"""The retention sweeper: archived outputs whose retention ended (VIDEOGEN_ARCHIVE_RETENTION) are deleted
from the archive and recorded EXPIRED; the video's record stays (Get still shows it, with its expire_time in
the past), and StreamContent then answers FAILED_PRECONDITION VIDEO_OUTPUT_EXPIRED.

It runs on every replica, every `interval` seconds (60 by default: retention is counted in days, so a
minute late is nothing, and each pass is one indexed query, `list_expired`). Per video it takes the same
lease as a copy (`archive_lease`), so that two replicas do not both delete and save, and a copy and a
delete of one video never interleave. Deleting is idempotent anyway (a missing object is no error), and a
pass that fails half-way is finished by the next one: an output is recorded EXPIRED only after its object
was deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random

from videogen_server import errors
from videogen_server.domain.clock import utcnow
from videogen_server.domain.video import ArchiveState, VideoRecord, archive_key
from videogen_server.services.archiver import Announce, archive_lease
from videogen_server.services.leases import Leases
from videogen_server.services.ports import Coordinator, OutputArchive, VideoStore

log = logging.getLogger(__name__)


class RetentionSweeper:
    def __init__(
        self,
        store: VideoStore,
        archive: OutputArchive,
        coordinator: Coordinator,
        *,
        announce: Announce,
        interval: float = 60.0,
        batch: int = 100,
        leases: Leases | None = None,
    ) -> None:
        self._store = store
        self._archive = archive
        self._announce = announce
        self._interval = interval
        self._batch = batch
        # A sweep holds a video's archive lease for one delete-and-save. Pass the archiver's `leases` so that
        # a sweep and a copy of one video in this process exclude each other too (Leases.acquire); without
        # it the sweeper keeps leases of its own, which only exclude other instances.
        self._owns_leases = leases is None
        self._leases = leases if leases is not None else Leases(coordinator, on_lost=lambda _: None)
        self._task: asyncio.Task[None] | None = None
        self.expired = 0  # outputs this instance expired (deleted from the archive), for metrics
        self._closed = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._sweep_forever(), name="retention sweeper")

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._owns_leases:
            await self._leases.close()

    async def sweep(self) -> int:
        """One pass: every video whose retention ended, a batch at a time. Returns the outputs expired."""
        done = 0
        while not self._closed:
            records = await self._store.list_expired(utcnow(), limit=self._batch)
            swept = 0
            for record in records:
                if self._closed:
                    break
                swept += await self._expire(record.id)
            done += swept
            if len(records) < self._batch or swept == 0:
                break  # the last batch, or one held elsewhere right now: the next pass
        if done:
            self.expired += done
            log.info("retention: deleted %d archived output(s) whose retention ended", done)
        return done

    async def _expire(self, video_id: str) -> int:
        lease = archive_lease(video_id)
        if not await self._leases.acquire(lease):
            return 0  # another replica, or a copy here, holds it now
        try:
            record = await self._store.get(video_id)
            if record is None:
                return 0
            now = utcnow()
            if record.expire_time is None or record.expire_time > now:
                return 0  # re-archived or kept longer meanwhile
            expired = 0
            outputs = list(record.outputs)
            for i, output in enumerate(outputs):
                if output.archive is ArchiveState.ARCHIVED:
                    await self._archive.delete(archive_key(video_id, output.index))
                    outputs[i] = dataclasses.replace(output, archive=ArchiveState.EXPIRED)
                    expired += 1
            if expired:
                await self._save(record.replace(outputs=tuple(outputs), update_time=now))
            return expired
        finally:
            await self._leases.release([lease])

    async def _save(self, record: VideoRecord) -> None:
        saved = await self._store.save(record)
        await self._announce(saved)

    async def _sweep_forever(self) -> None:
        while not self._closed:
            try:
                await self.sweep()
            except errors.VideogenError as exc:
                log.warning("retention sweep failed (%s); next in ~%.0fs", exc, self._interval)
            except Exception:
                log.exception("retention sweep failed unexpectedly; next in ~%.0fs", self._interval)
            await asyncio.sleep(self._interval * random.uniform(0.8, 1.2))
