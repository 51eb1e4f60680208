"""The ports of the use cases: what the services need from the outside world, as protocols.

Each port has its real adapters elsewhere (the store engines in store/) and an in-memory one beside them,
shipped for tests. The services import these protocols, never an adapter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from videogen_server.domain.generation import GenerateSpec
from videogen_server.domain.listing import SCAN_BUDGET, ListCursor, ListPage, ListQuery
from videogen_server.domain.model_info import ModelInfo
from videogen_server.domain.task import UpstreamRequest, UpstreamTask
from videogen_server.domain.video import VideoRecord

# --- The video store (design §2 "The job record", "Idempotency"; §6 "Scale") ---------------------------
#
# Engines: `SqliteVideoStore` (store/sqlite.py, the embedded default) and `MemoryVideoStore`
# (store/memory.py, one process, nothing on disk), and `RedisVideoStore` (store/redis.py, shared by several
# replicas). Every engine implements the same protocol; each method's docstring says which atomicity it
# needs, so that an implementation for another engine knows what it must guarantee *across processes*, not
# only within one event loop. What `save` keeps over a stored record is decided by the model
# (`VideoRecord.merged_with`), not by each engine.
#
# Every method is safe to call concurrently from many tasks. A method that returns has made its effect
# durable (it survives a crash of this process; the in-memory engine has no durability to offer). Cancelling
# the awaiting task does not undo a write that already reached the engine: callers must treat a cancelled
# `claim` as "maybe claimed".
#
# Errors are the builtin ones named below (KeyError, ValueError, RuntimeError): they mean a bug in the caller
# or a broken store, not something to tell the client (errors.py). The one domain error a store raises is
# `errors.StoreUnavailable`: a shared store that cannot be reached right now (UNAVAILABLE, retryable); it
# raises it before anything was written, or when it cannot tell (then like a cancelled call: "maybe").


@runtime_checkable
class VideoStore(Protocol):
    async def open(self) -> None:
        """Connect, and create or migrate the schema. Call once before any other method."""

    async def close(self) -> None:
        """Wait for the calls in flight, then release the connection. Later calls raise RuntimeError."""

    async def check(self) -> None:
        """Return when the store answers now; raise `errors.StoreUnavailable` when it does not.

        Cheap (health runs it about every second, api/server.py): no read of any record. An embedded engine
        that is open answers at once; a shared one makes one round trip (Redis: PING), bounded by its own
        timeouts. On a closed store: RuntimeError, as every method.
        """

    async def get(self, video_id: str, *, owner: str | None = None) -> VideoRecord | None:
        """The stored record, or None for an unknown id.

        With `owner`: the record only if it belongs to `owner`, else None, and a video of another owner
        must cost exactly the work of an unknown id (the same query, nothing answered from memory), so
        that a caller cannot tell another caller's video from a missing one by how fast NOT_FOUND comes.
        (`Videos.load` always passes the caller.)

        Needs: a read of one committed value (never a torn or half-written record). May be served from a
        cache for terminal records, which never change except for output metadata; with `owner`, only
        when the cached record is that owner's.
        """

    async def claim(self, record: VideoRecord, *, max_active: int | None = None) -> tuple[VideoRecord, bool]:
        """Record a new video and its idempotency key, *before* the upstream create.

        With ``record.request_id != ""``: atomically insert `record` unless the key
        ``(record.owner, record.request_id)`` is already taken. Returns ``(stored, inserted)``: the record
        already stored for that key and False, or `record` itself and True. Exactly one of any number of
        concurrent callers with the same key (in any process sharing the store) gets True.
        Redis: ``SET key:{owner}:{request_id} <id> NX`` and the record written in one MULTI/Lua script;
        on a lost race, read the winner's record.

        With ``record.request_id == ""``: a plain insert; returns ``(record, True)``.

        The key is scoped by owner: the same request_id from two callers makes two videos.
        A record whose `id` already exists (a bug: ids are fresh UUIDs) raises ValueError.

        With ``max_active=N`` (the per-caller cap, VIDEOGEN_MAX_ACTIVE_PER_CALLER): a record that would be
        inserted is inserted only while ``record.owner`` has fewer than N records not in a terminal state
        (CREATING, QUEUED, IN_PROGRESS); otherwise nothing is written and `errors.ActiveLimitReached` is
        raised. A taken key is still answered with its record (a replay is never refused). Needs: the
        count and the insert in ONE atomic step *across processes* (SQLite: one write transaction; Redis:
        the claim script, over a per-owner set of unfinished ids kept in the same step as every save and
        delete), so that N replicas racing for the last slot insert one record between them, not N.
        Without `max_active` the claim costs what it did before: no count is made.
        """
        ...

    async def save(self, record: VideoRecord) -> VideoRecord:
        """Persist a new state of an existing video; returns what is stored now, which is
        ``stored.merged_with(record)`` (the model's rule, so that every engine keeps the same).

        A stored terminal state (COMPLETED/FAILED/CANCELLED) is final: when the stored record is terminal
        and `record` has another status, nothing is written and the stored record is returned. With the
        same terminal status only metadata is merged in: outputs (per index, known content type / size /
        sha256 / lost reason are filled, never erased; the archive state only moves forward, PENDING ->
        ARCHIVED -> EXPIRED or PENDING -> LOST), expire_time (taken as it is, None included, from a
        `record` that moves an output's archive state forward; otherwise filled in, and kept once an
        output is past PENDING), credits, upstream_status and update_time; the error and complete_time
        stay as first recorded.
        Non-terminal states are last-writer-wins.

        Needs: an atomic read-check-write of one record (Redis: WATCH/MULTI or a Lua script), so that a
        concurrent `save` of a terminal state is never overwritten by a stale non-terminal one.
        Unknown id: KeyError. Changing `owner` or `request_id` of a stored video: ValueError.
        """
        ...

    async def delete(self, video_id: str) -> None:
        """Forget a video whose create definitely failed, freeing its request_id for a retry.

        Removes the record and its idempotency key together (atomically: a concurrent `claim` with that
        key sees either both or neither). Unknown id: no-op.
        """

    async def list_unfinished(self) -> list[VideoRecord]:
        """Every record not in a terminal state (CREATING included), oldest create_time first.

        It exists so that a restarted service can resume its pollers and reconcile the CREATING records
        whose upstream create may or may not have happened; nothing calls it at start-up yet (issue 9).
        Needs: a consistent scan; it may miss records created concurrently.
        """

    async def list_unarchived(self, limit: int = 100) -> list[VideoRecord]:
        """COMPLETED records with at least one output still PENDING (not copied to the archive yet), oldest
        complete_time first, at most `limit` (issue 11: the archiver's recovery scan after a restart or a
        takeover; the copies not done yet). A record with no outputs is not listed: nothing to copy.

        Needs: an index kept in the same atomic step as every claim, save and delete (never a scan of every
        record): a record enters it when it is saved COMPLETED with a PENDING output and leaves it once no
        output is PENDING. It may miss records saved concurrently.
        """
        ...

    async def list_expired(self, now: datetime, limit: int = 100) -> list[VideoRecord]:
        """Records with an ARCHIVED output whose expire_time is at or before `now`, oldest expire_time first,
        at most `limit` (issue 11: the retention sweeper). A record kept forever (expire_time None) is
        never listed.

        Needs: an index kept as for `list_unarchived`, ordered by expire_time: a record leaves it once no
        output is ARCHIVED (all EXPIRED, say). It may miss records saved concurrently.
        """
        ...

    async def list_page(
        self,
        owner: str,
        query: ListQuery,
        *,
        after: ListCursor | None,
        limit: int,
        scan_limit: int = SCAN_BUDGET,
    ) -> ListPage:
        """`owner`'s videos matching `query` (domain/listing.py `matches`), newest first (create_time
        descending, then id descending), strictly after `after` (None: from the newest), at most `limit`
        (issue 12: List).

        Walks `owner`'s own index only (never another owner's entries), in that order, and examines at most
        `scan_limit` entries (>= `limit`): it stops at `limit` matches, at the end of the index, or at the
        budget, and in the last case (with entries left) says where (`ListPage.scanned_to`), so a page of a
        filter that matches little costs a bounded amount and the next page resumes there.

        Needs: an index on (owner, create_time, id) kept in the same atomic step as every claim and
        delete (create_time, id and owner never change, so a save need not touch it; status, which a save
        changes, is read from the record as it is when the page is read). Consistency: each page is read
        from committed records (Redis: one script, so a page is one snapshot; SQLite: one read
        transaction); between pages, records created later sort before the cursor and are not returned,
        records deleted meanwhile are simply missing, and a record whose status changed is filtered by its
        status at the time its page is read.
        """
        ...

    async def secret(self, name: str) -> bytes:
        """A random 32-byte secret kept under `name`: made on first use, then the same for every caller
        sharing the store (every replica) and across restarts. Atomic: of concurrent first uses (in any
        process), one secret wins and every caller gets it. (The page tokens of List are signed with one:
        domain/page_token.py.) The memory engine keeps it for its life only."""
        ...

    async def save_upload(self, uri: str, key: str, expire_time: datetime) -> None:
        """Remember that the provider file `uri` was uploaded with the provider key named `key`, until
        `expire_time` (issue 12: a runway:// URI belongs to the account of the key that uploaded it, so a
        Generate naming it must be created with that key). Saving a URI again replaces what was kept.

        Fleet-wide and durable like the records (every replica sharing the store reads it back, also after
        a restart), for the URI's lifetime only: an entry at or past its expire_time is never returned, and
        the engine drops such entries itself (SQLite prunes the expired rows on each save, Redis expires
        the key, the memory engine prunes on save), so the kept set is bounded by the uploads of one
        lifetime (24 h). Atomic: a later `upload_key` anywhere sees the save once it returned."""

    async def upload_key(self, uri: str) -> str | None:
        """The key name `save_upload` kept for `uri`, or None: not uploaded through us, or expired."""
        ...


# --- Coordination between processes sharing one store (design §6 "Scale"; issue 10) -------------------
#
# Engines: `LocalCoordinator` (store/local_coordinator.py: one process, for the SQLite and memory stores,
# where this process is the whole fleet) and `RedisCoordinator` (store/redis_coordinator.py: every replica
# sharing one Redis). The services use it for three things:
#
# - **Leases**: one holder per unfinished video across the fleet. The holder polls Runway for it (and, while
#   it is CREATING, is the process whose POST is in flight); nobody else does. A lease lasts `lease_ttl`
#   seconds unless its holder renews it, so a holder that dies (kill -9) loses its leases by expiry and
#   another instance takes them over; a holder that stops cleanly releases them, and says so, so that a
#   successor takes over at once.
# - **The poll lock**: at most one upstream read of a task in flight across the fleet (a stale Get on three
#   replicas costs one GET between them). Short-lived, with its own expiry.
# - **Notices**: "the record of video X changed in the store" (sent by whoever saved it) and "the lease of
#   video X was released", delivered to every *other* instance. Notices may be lost (pub/sub); receivers
#   re-read the store periodically anyway, so a lost notice delays a watcher, never strands it.
#
# Errors: `errors.StoreUnavailable` when the shared engine cannot be reached (the caller treats a lease it
# could not renew as lost, and one it could not take as not taken). Every method is safe to call
# concurrently from many tasks.


@dataclass(frozen=True)
class Notice:
    """News from another instance: `kind` is "changed" (re-read the record of `video_id` from the store),
    "released" (its lease is free: try to take it now) or "resync" (notices may have been missed, e.g. the
    subscription was re-established: re-read every record you follow; `video_id` is "")."""

    kind: str
    video_id: str = ""


@runtime_checkable
class Coordinator(Protocol):
    @property
    def instance(self) -> str:
        """This process's identity as a lease holder: fresh for every start (a restarted process holds
        nothing)."""
        ...

    @property
    def lease_ttl(self) -> float:
        """Seconds a lease lasts without renewal. Holders renew every `lease_ttl / 3`."""
        ...

    async def open(self) -> None:
        """Connect (and start listening for notices). Call once before any other method."""

    async def close(self) -> None:
        """Stop listening and release the connection. Does not release leases (call `release` first)."""

    async def acquire(self, video_id: str) -> bool:
        """Take the lease of `video_id` for this instance unless another instance holds it; True when this
        instance holds it now (also when it already did: then it is renewed). Atomic across the fleet:
        of any number of concurrent callers, one gets True."""
        ...

    async def renew(self, video_ids: Collection[str]) -> set[str]:
        """Extend the leases this instance holds among `video_ids` by `lease_ttl`, in one round trip;
        returns those it still holds. A lease that expired and was taken by another is not renewed (and
        not returned): its former holder must stop polling."""
        ...

    async def release(self, video_ids: Collection[str]) -> None:
        """Give up the leases this instance holds among `video_ids` (compare-and-delete: never another's)
        and send a "released" notice for each, so that a successor takes over without waiting for expiry."""

    async def holder(self, video_id: str) -> str | None:
        """The instance that holds the lease of `video_id` now, or None."""
        ...

    async def lock_poll(self, video_id: str, ttl: float) -> bool:
        """Take the fleet-wide lock on reading `video_id`'s task from upstream, for at most `ttl` seconds;
        False when another caller (here or elsewhere) holds it."""
        ...

    async def unlock_poll(self, video_id: str) -> None:
        """Free the read lock taken by this instance (compare-and-delete; no-op if it expired)."""

    async def announce(self, video_id: str) -> None:
        """Send a "changed" notice for `video_id` to every other instance (best effort: may be lost)."""

    def notices(self) -> AsyncIterator[Notice]:
        """Notices from other instances, for as long as the coordinator is open (one consumer). After a
        gap in the subscription it yields a "resync" notice."""
        ...


# --- The output archive (issue 11) ----------------------------------------------------------------------
#
# Where every finished video's outputs are copied once, and served from, long after Runway's signed URLs
# expire. Engines: `ObjectStoreArchive` (archive/object_store.py: a local directory, `file:///abs/dir`, or an
# S3-compatible bucket, `s3://bucket/prefix`, through one object-store library) and `MemoryArchive`
# (archive/memory.py, for tests of the services). Keys are chosen by the services
# (`archive_key(video_id, index)`, domain/video.py); an engine adds its own prefix.
#
# Errors: `errors.ArchiveUnavailable` (cannot read or write now: retryable), `errors.ArchiveObjectMissing`
# (no such object), `errors.OutOfRange` (a read starting past the end). Every method is safe to call
# concurrently from many tasks; nothing blocks the event loop.


@runtime_checkable
class OutputArchive(Protocol):
    @property
    def description(self) -> str:
        """Where objects go, for the start-up log line: ``file:///abs/dir`` or ``s3://bucket/prefix``
        (never a credential)."""
        ...

    async def open(self) -> None:
        """Connect and prove that the archive can be written, read back and deleted from (a small probe
        object): raises `errors.ArchiveUnavailable` with one clear line otherwise (a bucket that does not
        exist, a directory that cannot be created or written, wrong credentials). Call once, first."""

    async def close(self) -> None:
        """Release connections and threads. Later calls raise RuntimeError."""

    async def put(self, key: str, chunks: AsyncIterator[bytes], *, content_type: str) -> None:
        """Store the bytes `chunks` yields under `key`, streamed (never whole in memory: at most a bounded
        number of chunks or one multipart part are buffered).

        Atomic: until `put` returns, readers of `key` see what was there before (usually nothing), never a
        part; a `put` that fails, is cancelled, or whose `chunks` raises (a download cut mid-way, a size
        that does not match) leaves nothing new under `key` (a temporary file or multipart upload is
        removed/aborted). Overwriting an existing object with the same bytes is allowed (a copy redone).
        Raises ArchiveUnavailable when the archive refuses or fails the write; an exception raised by
        `chunks` propagates as it is."""

    def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AbstractAsyncContextManager[ArchiveRead]:
        """A ranged read of the object: bytes ``[start, end)`` (to the end when `end` is None), streamed.
        `total_size` is the object's whole size; `content_type` as stored. ArchiveObjectMissing when there
        is no such object; OutOfRange when `start` >= size (and size > 0)."""
        ...

    async def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is no such object (a HEAD)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; no-op when there is none (idempotent)."""


# --- the video provider ------------------------------------------------------------------------------
# Runway today (providers/runway/provider.py), an in-memory one for tests (providers/memory.py); several
# Runway keys or a second provider later. Everything provider-shaped (endpoints, bodies, status words,
# failure codes) stays behind this port: the services see plans, task references and UpstreamTask.


class TaskRef(Protocol):
    """A task the provider has just accepted."""

    @property
    def id(self) -> str: ...
    @property
    def key(self) -> str: ...  # the name of the provider key that created it (recorded as runway_key)
    @property
    def estimated_credits(self) -> float | None: ...
    @property
    def status(self) -> str: ...  # the provider's word for a new task (recorded as upstream_status)


class OutputStreamLike(Protocol):
    """An open read of one output, from a byte offset."""

    @property
    def total_size(self) -> int | None: ...
    @property
    def content_type(self) -> str: ...
    def iter_chunks(self, chunk_size: int) -> AsyncIterator[bytes | memoryview]:
        """The bytes in order, `chunk_size` at a time (the last may be shorter). A chunk may be a read-only
        memoryview (an archive read hands out slices of the segment it fetched instead of copying them)."""
        ...


class ArchiveRead(OutputStreamLike, Protocol):
    """An open ranged read of one archived object."""

    def iter_sized(self, next_size: Callable[[], int]) -> AsyncIterator[bytes | memoryview]:
        """As `iter_chunks`, with each chunk's size asked of `next_size()` just before it is read (the last
        may be shorter): StreamContent's message sizes follow its reader (services/message_sizes.py)."""
        ...


class OutputSource(Protocol):
    """What the content relay needs: a task's output URLs, and ranged reads of them.

    Errors: UpstreamNotFound (no such task), OutputExpired (the URL no longer works: read the task again),
    OutOfRange (start past the end), UpstreamUnavailable (retryable), DeadlineExceeded."""

    async def get_task(
        self, task_id: str, *, key: str = "", deadline: float | None = None
    ) -> UpstreamTask: ...

    def open_output(
        self, url: str, *, start: int = 0, end: int | None = None, deadline: float | None = None
    ) -> AbstractAsyncContextManager[OutputStreamLike]: ...


class VideoProvider(OutputSource, Protocol):
    """A generation provider, in the domain's terms."""

    def models(self) -> tuple[ModelInfo, ...]:
        """The models this provider describes (ListModels): the ones `plan` validates, as its catalog says,
        current ones first. Models it does not list may still be planned (passed through upstream)."""
        ...

    def plan(self, spec: GenerateSpec, *, own_video: str = "") -> UpstreamRequest:
        """Validate `spec` and decide what to send: raises InvalidArgument with every violation. The plan's
        mode, seconds and size go on the video record; the rest is the provider's own (opaque here).

        `own_video` (Remix): the source of a video-to-video request, a URI this provider itself handed out
        (the output URL of one of its tasks, read just now, or an `upload`'s URI), never a caller's value:
        it is sent as the video input without the checks on callers' URIs (a provider's own output URL
        need not look like one a caller may send), and `spec.video_uri` must be empty. `UNRESOLVED_SOURCE`
        validates everything else before the source is resolved (that plan is never sent)."""
        ...

    async def create(
        self, plan: UpstreamRequest, *, key: str | None = None, deadline: float | None = None
    ) -> TaskRef:
        """Start a (paid) task from a plan this provider made, with the named key (None: the provider picks
        the least-loaded key that can take the plan's model; the TaskRef says which). `deadline` bounds only
        what happens before the request can reach the provider. Raises UpstreamOutcomeUnknown when the task
        may or may not exist; any other error means no task was started."""
        ...

    async def get_task(self, task_id: str, *, key: str = "", deadline: float | None = None) -> UpstreamTask:
        """The task as the provider sees it now, read with the key that created it (`key`: a record's
        runway_key; "" is the default key). UpstreamNotFound: it no longer exists."""
        ...

    async def cancel_task(self, task_id: str, *, key: str = "", deadline: float | None = None) -> bool:
        """Cancel (or delete) a task, with the key that created it. False: it was already gone."""
        ...

    async def upload(
        self,
        path: Path,
        *,
        filename: str,
        size: int,
        content_type: str,
        key: str | None = None,
        deadline: float | None = None,
    ) -> UploadedAsset:
        """Put a local file (already checked: size, type) into the provider's ephemeral storage, streamed
        from `path` (never whole in memory), with the named key (None: the provider picks one). Errors:
        UpstreamUnavailable (retryable), UpstreamRejected; nothing is left to clean up on our side."""
        ...


# The `own_video` of a plan made only to validate a Remix before its source is resolved (and, for a source
# that must be uploaded first, before anything is uploaded): never sent.
UNRESOLVED_SOURCE = "videogen:unresolved-source"


@dataclass(frozen=True)
class UploadedAsset:
    """A file in the provider's storage: the URI its create requests accept, until `expire_time`, and the
    name of the key that uploaded it (an upload belongs to that key's account)."""

    uri: str
    expire_time: datetime
    key: str
