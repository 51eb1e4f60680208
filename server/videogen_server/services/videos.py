"""The video use cases: Generate, Get and Cancel over the store and the video provider, and the models that
can be generated with (ListModels). No gRPC here."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from videogen_server import errors
from videogen_server.domain.clock import utcnow
from videogen_server.domain.generation import GenerateSpec
from videogen_server.domain.ids import parse_uuid
from videogen_server.domain.model_info import ModelInfo
from videogen_server.domain.task import UpstreamRequest
from videogen_server.domain.video import VideoRecord, VideoStatus
from videogen_server.services.listing import VideoListing
from videogen_server.services.ports import VideoProvider, VideoStore
from videogen_server.services.tracker import TaskTracker
from videogen_server.services.upload_keys import Pin, UploadKeys

log = logging.getLogger(__name__)


def parse_video_id(video_id: str) -> str:
    """Video ids are UUIDs; anything else is refused before it reaches the store or Runway."""
    vid = parse_uuid(video_id)
    if vid is None:
        raise errors.InvalidArgument(
            "id must be a video id (a UUID)",
            [errors.FieldViolation("id", "must be a UUID as returned by Generate")],
        )
    return vid


# Resolves a Remix's source once its claim is won, given the key the request's uploads pin it to (None: any):
# the plan to send, and the key its own upload (if any) was made with.
Prepare = Callable[[str | None], Awaitable[tuple[UpstreamRequest, str | None]]]

# How long `Videos.close` waits for cancelled creates to record their outcome (one local store write each).
_CLOSE_WAIT = 5.0


class _InFlight:
    """One create in flight: the background task that sends the paid POST and records its answer, and the
    callers waiting for it. The task outlives its callers (one that leaves must not leave a paid task
    unrecorded), so its outcome is always retrieved here, and logged once when no caller received it: a
    caller that did receive it has its own status and access line, which a log line here would only repeat.
    """

    __slots__ = ("delivered", "listeners", "task", "video_id")

    def __init__(self, video_id: str, task: asyncio.Task[VideoRecord]) -> None:
        self.video_id = video_id
        self.task = task
        self.listeners = 0
        self.delivered = False
        # Registered before any waiter's shield: it runs while the waiters still count as listening.
        task.add_done_callback(self._settled)

    async def outcome(self) -> VideoRecord:
        """The create's result for one caller; the caller may leave (be cancelled) without touching it."""
        self.listeners += 1
        delivered = False
        try:
            record = await asyncio.shield(self.task)
            delivered = True
            return record
        except asyncio.CancelledError:
            raise
        except BaseException:
            delivered = True
            raise
        finally:
            self.listeners -= 1
            self.delivered = self.delivered or delivered
            if not self.delivered and self.listeners == 0 and self.task.done():
                # Cancelled after the outcome was ready but before it reached this caller: nobody has it.
                self._report()

    def _settled(self, task: asyncio.Task[VideoRecord]) -> None:
        if self.listeners == 0:
            self._report()

    def _report(self) -> None:
        if self.delivered:
            return
        self.delivered = True  # once
        task = self.task
        if task.cancelled():
            return  # only shutdown cancels a create, and `Videos._create` logs that case itself
        exc = task.exception()  # retrieved: never "Task exception was never retrieved"
        if exc is None:
            return  # `Videos._create` logs every successful create
        if isinstance(exc, errors.VideogenError):
            log.warning(
                "video %s: create failed after its caller left: %s (%s)",
                self.video_id,
                exc.message,
                exc.reason,
            )
        else:
            log.error("video %s: create failed after its caller left", self.video_id, exc_info=exc)


class Videos:
    def __init__(
        self,
        store: VideoStore,
        provider: VideoProvider,
        tracker: TaskTracker,
        *,
        max_active_per_caller: int | None = None,
    ) -> None:
        self._store = store
        # VIDEOGEN_MAX_ACTIVE_PER_CALLER: counted by the store in the claim itself (fleet-wide), or None.
        self._max_active = max_active_per_caller
        self._provider = provider
        self._tracker = tracker
        # Creates in flight in this process, by video id: concurrent duplicates of one request_id wait here,
        # and shutdown waits for them all (`drain`, `close`), whether or not a caller still listens.
        self._creating: dict[str, _InFlight] = {}
        self._closed = False
        self._listing = VideoListing(store)  # List: the store's records only
        self._upload_keys = UploadKeys(store)  # which key a Generate naming our uploads must use

    def models(self) -> tuple[ModelInfo, ...]:
        """The models the provider describes, as its catalog says (the same for every caller)."""
        return self._provider.models()

    async def generate(
        self,
        owner: str,
        spec: GenerateSpec,
        *,
        deadline: float | None,
        fingerprint: str | None = None,
        source_video_id: str = "",
        own_video: str = "",
        prepare: Prepare | None = None,
    ) -> VideoRecord:
        """Claim the request_id, then start the provider's task, once per request_id.

        Remix (services/remix.py) passes the rest: its own `fingerprint` (from the request it got, not from
        the source it resolves), the `source_video_id` to record, `own_video` (UNRESOLVED_SOURCE: the plan
        made here only validates) and `prepare`, which resolves the source and makes the plan to send
        (and the key to send it with) once the claim is won: a replay of the request_id never runs it, so
        it never uploads twice. A `prepare` that fails forgets the claim, like a create that failed."""
        request = self._provider.plan(spec, own_video=own_video)  # validation first: nothing invalid costs
        # The key its uploads live under (services/upload_keys.py), or None; a refusal stores nothing.
        pin = await self._upload_keys.pin(spec)
        now = utcnow()
        record = VideoRecord(
            id=str(uuid.uuid4()),
            owner=owner,
            mode=request.mode,
            model=spec.model,
            prompt=spec.prompt,
            seconds=request.seconds,
            size=request.size,
            status=VideoStatus.CREATING,
            create_time=now,
            update_time=now,
            request_id=spec.request_id,
            fingerprint=fingerprint or spec.fingerprint(),
            source_video_id=source_video_id,
        )
        if self._closed:
            # The service is stopping: no new paid create may start after shutdown stopped waiting for them.
            raise errors.UpstreamUnavailable("the service is shutting down", reason="SHUTTING_DOWN")
        # The lease of the new video is taken before its claim (a fresh id: nobody holds it), so that another
        # instance that finds the CREATING record knows a create is in flight, not orphaned (issue 10).
        if not await self._tracker.hold(record.id):
            raise errors.UpstreamUnavailable("could not take the lease of a new video; retry")
        # The idempotency key is recorded before the POST (design §2).
        try:
            stored, inserted = await self._claim(record)
        except BaseException:
            await self._tracker.let_go(record.id)
            raise
        if not inserted:
            await self._tracker.let_go(record.id)
            return await self._existing(stored, record, deadline)
        task = asyncio.create_task(
            self._create(record, request, pin, deadline, prepare), name=f"create-{record.id}"
        )
        in_flight = _InFlight(record.id, task)
        self._creating[record.id] = in_flight
        task.add_done_callback(lambda _: self._creating.pop(record.id, None))
        # Shielded: a caller that goes away mid-POST does not leave the outcome unrecorded.
        return await in_flight.outcome()

    async def _claim(self, record: VideoRecord) -> tuple[VideoRecord, bool]:
        """The store's claim, capped by the caller's unfinished videos when a cap is configured (the store
        counts and inserts in one atomic step, so the cap holds across replicas). A replay of a taken
        request_id is answered with its video, never refused."""
        if self._max_active is None:
            return await self._store.claim(record)  # no cap: no count, the claim as it always was
        try:
            return await self._store.claim(record, max_active=self._max_active)
        except errors.ActiveLimitReached as exc:
            raise errors.ResourceExhausted(
                f"this caller already has {exc.limit} unfinished videos (limit {exc.limit} per caller); "
                "retry when one of them has finished",
                reason="ACTIVE_VIDEOS_LIMIT_EXCEEDED",
                subject="VIDEOGEN_MAX_ACTIVE_PER_CALLER",
            ) from None

    async def _existing(
        self, stored: VideoRecord, record: VideoRecord, deadline: float | None
    ) -> VideoRecord:
        if stored.fingerprint != record.fingerprint:
            raise errors.AlreadyExists(
                f"request_id {record.request_id!r} was already used for a different request",
                metadata={"request_id": record.request_id, "id": stored.id},
            )
        current: VideoRecord | None = stored
        while current is not None and current.status is VideoStatus.CREATING:
            in_flight = self._creating.get(current.id)
            if in_flight is not None:
                return await in_flight.outcome()
            # Not created here: closed as outcome-unknown if its creator is gone (no lease holder), else
            # (another instance's create is in flight) wait for its outcome, within this caller's deadline.
            current = await self._tracker.claim_orphan(current)
            if current is None or current.status is not VideoStatus.CREATING:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise errors.DeadlineExceeded("deadline exceeded waiting for the create of this request_id")
            await self._tracker.wait_elsewhere(current.id)
            current = await self._store.get(current.id)
        if current is None:
            # The create failed on the instance that sent it (nothing was started at Runway), which freed
            # the request_id: a retry creates afresh.
            raise errors.UpstreamUnavailable(
                f"the create for request_id {record.request_id!r} failed on another instance; retry"
            )
        return current

    async def _create(
        self,
        record: VideoRecord,
        request: UpstreamRequest,
        pin: Pin | None,
        deadline: float | None,
        prepare: Prepare | None = None,
    ) -> VideoRecord:
        # Every write below is shielded: once Runway has answered (or may have), the record must reach the
        # store even if shutdown cancels this task meanwhile (the store runs what it was handed first).
        # On every failure the lease is given up after the record's fate is stored (which tells the other
        # instances); on success it is kept: the creator is the video's first poller.
        if prepare is not None:
            try:
                # A source uploaded now goes to the key the request's own uploads already hold it to.
                request, key = await prepare(pin.key if pin is not None else None)
                if key is not None and pin is None:
                    pin = Pin(key, ("id",))  # the source was uploaded with that key: create with it
            except BaseException:
                # Nothing was sent to create a task: forget the record, freeing the request_id.
                await asyncio.shield(self._store.delete(record.id))
                await asyncio.shield(self._tracker.let_go(record.id))
                raise
        try:
            created = await self._upload_keys.create(self._provider, request, pin, deadline=deadline)
        except errors.UpstreamOutcomeUnknown as exc:
            saved = await asyncio.shield(self._store.save(record.outcome_unknown()))
            await self._tracker.announce(saved)
            await self._tracker.let_go(record.id)
            exc.metadata["id"] = saved.id
            raise
        except asyncio.CancelledError:
            # Only shutdown cancels a create (callers are shielded from it): the grace ended with the POST
            # still out. Runway may already have started (and billed) the task, and cannot be asked, so the
            # video is closed as outcome-unknown now, while the store is open: never deleted (a retry of the
            # request_id after the restart would then pay twice) and never left CREATING for a restart to
            # guess about.
            saved = await asyncio.shield(self._store.save(record.outcome_unknown()))
            log.warning(
                "video %s: create still in flight at shutdown after the grace period; closed as outcome "
                "unknown (Runway may have started the task)",
                record.id,
            )
            await asyncio.shield(self._tracker.announce(saved))
            await asyncio.shield(self._tracker.let_go(record.id))
            raise
        except BaseException:
            # Runway definitely did not start a task (validation, credits, 429, no connection) or we never
            # sent it: forget the record so the same request_id can be tried again.
            await asyncio.shield(self._store.delete(record.id))
            await asyncio.shield(self._tracker.let_go(record.id))  # tells waiting instances too
            raise
        now = utcnow()
        updated = record.replace(
            upstream_id=created.id,
            runway_key=created.key,  # every later call for this video uses the key that created it
            status=VideoStatus.QUEUED,
            upstream_status=created.status,
            estimated_credits=created.estimated_credits,
            update_time=now,
        )
        what = f"{record.model}, key {created.key}"
        log.info("video %s created as Runway task %s (%s)", record.id, created.id, what)
        saved = await asyncio.shield(self._store.save(updated))
        await self._tracker.announce(saved)  # locally, and to the instances waiting for this create
        return saved

    async def drain(self, within: float) -> None:
        """Wait up to `within` seconds until no create is in flight, whoever still waits for them. Creates
        that start meanwhile (a Generate still running in the server's grace period) are waited for too."""
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while self._creating:
            remaining = end - loop.time()
            if remaining <= 0:
                return
            await asyncio.wait([c.task for c in list(self._creating.values())], timeout=remaining)

    async def close(self) -> None:
        """Stop creating. Called by shutdown once the grace period is over and no RPC runs any more, before
        the store and the Runway client close: a create still in flight is cancelled, and records its video
        as outcome-unknown before this returns (see `_create`)."""
        self._closed = True
        pending = [c.task for c in self._creating.values()]
        for task in pending:
            task.cancel()
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=_CLOSE_WAIT)
        if late:
            log.error("%d create(s) did not record their outcome at shutdown; left CREATING", len(late))

    async def load(self, owner: str, video_id: str) -> VideoRecord:
        """The caller's own video; another caller's video is indistinguishable from a missing one, also in
        the work it costs: the store looks it up scoped to the caller, the same way as an unknown id."""
        vid = parse_video_id(video_id)
        record = await self._store.get(vid, owner=owner)
        if record is None or record.owner != owner:  # the check stays: a store that ignores `owner`
            raise errors.NotFound(vid)
        if record.status is VideoStatus.CREATING and vid not in self._creating:
            # Another instance's create in flight: as it is (callers see QUEUED). Its creator gone (no lease
            # holder): closed as outcome-unknown.
            current = await self._tracker.claim_orphan(record)
            if current is None:
                raise errors.NotFound(vid)  # its create failed meanwhile and it was forgotten
            record = current
        return record

    async def get(self, owner: str, video_id: str, *, deadline: float | None) -> VideoRecord:
        record = await self.load(owner, video_id)
        try:
            return await self._tracker.refresh(record, deadline=deadline)
        except errors.UpstreamError as exc:
            # Runway is unreachable: the last recorded state is still the truest answer we have.
            log.warning("video %s: serving the recorded state, Runway read failed: %s", record.id, exc)
            return record

    async def cancel(self, owner: str, video_id: str, *, deadline: float | None) -> VideoRecord:
        record = await self.load(owner, video_id)
        if record.status is VideoStatus.CANCELLED:
            return record
        if record.status is VideoStatus.CREATING:
            raise errors.FailedPrecondition(
                "the video is still being created; retry the cancel in a moment", reason="VIDEO_CREATING"
            )
        # Read the task right before the DELETE: on Runway, DELETE of a finished task deletes its output.
        # A task that finishes in the milliseconds between this read and the DELETE is recorded CANCELLED
        # (its output is gone at Runway): that window is as small as we can make it without an atomic API.
        fresh = await self._tracker.refresh(record, deadline=deadline, max_age=0.0)
        if fresh.status.terminal:
            if fresh.status is VideoStatus.CANCELLED:
                return fresh
            raise errors.FailedPrecondition(
                f"the video is already {fresh.status.value}; cancelling would delete its output",
                reason="VIDEO_ALREADY_FINISHED",
                metadata={"status": fresh.status.value},
            )
        await self._provider.cancel_task(fresh.upstream_id, key=fresh.runway_key, deadline=deadline)
        saved = await self._store.save(fresh.cancelled())
        await self._tracker.announce(saved)
        log.info("video %s cancelled (Runway task %s deleted)", saved.id, saved.upstream_id)
        return saved

    async def remember_outputs(self, record: VideoRecord) -> None:
        """Record output metadata learnt while streaming (size, content type)."""
        await self._store.save(record)

    async def list(
        self, owner: str, *, page_size: int, page_token: str, filter_text: str
    ) -> tuple[list[VideoRecord], str]:
        """The caller's own videos, newest first, one page (services/listing.py): (videos, next token)."""
        return await self._listing.list(
            owner, page_size=page_size, page_token=page_token, filter_text=filter_text
        )
