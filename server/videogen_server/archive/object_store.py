"""The output archive on obstore: a local directory (``file:///abs/dir``) or an S3-compatible bucket
(``s3://bucket/prefix``), behind the `OutputArchive` port.

Why obstore: one asyncio API over local files, S3 (and GCS/Azure, unused yet) with streamed multipart puts,
ranged gets and HEAD, its I/O done by a Rust runtime off the event loop. What this module adds is the
port's contract on top, each point checked against the library (tests/unit/test_archive.py):

- Atomic puts. A local put writes ``<key>#<n>`` beside the key and renames it into place; S3 readers see an
  object only once its multipart upload completes. When `chunks` raises, obstore removes the temporary file
  or aborts the multipart upload, and the same exception comes out of `put` as it is. Cancellation is the
  hard case: cancelling obstore's future drops the upload without aborting it on S3 (an incomplete multipart
  upload stays behind, invisible but stored), so `put` never cancels it: it fails the input instead
  (`_Source.abort`) and lets obstore abort, then re-raises the CancelledError. A process killed mid-put still
  leaves a ``#n`` file (local) or an incomplete upload (S3): the README recommends a lifecycle rule.
- Bounded memory. A put is always a multipart upload (one part for a small object), which holds at most
  `put_concurrency` parts in flight plus the one being filled. An S3 read fetches the range in segments
  of about `read_segment` bytes, one ahead. A directory's objects are read without obstore, one chunk at a
  time with pread (archive/local_read.py: a third of obstore's CPU per byte, one chunk held per stream).
- Bounded waits. Every S3 request has a connect timeout and a whole-request timeout, and retries are capped
  in number and time, so a dead endpoint is an ArchiveUnavailable after seconds, never a hang. A segment is
  read whole before it is handed out, so a slow consumer never holds a request open past its timeout.
- Errors. Not found → ArchiveObjectMissing (on reads; `size` says None, `delete` ignores it); anything else
  the library raises (I/O, permissions, 5xx, connection, credentials) → ArchiveUnavailable with one line
  naming the archive, the operation and the cause, with no credentials and no endpoint userinfo.
- Content type. S3 keeps it as the object's Content-Type. obstore's local store keeps no attributes on a
  multipart put, so a local read reports `default_content_type` ("video/mp4", what every output is).

S3 configuration is obstore's: the endpoint, credentials and region come from the standard AWS_* variables
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, and the rest obstore knows),
read by obstore when the store is built in `open`; this module never sees a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import NotFoundError
from obstore.store import LocalStore, S3Store

from videogen_server import errors
from videogen_server.archive.chunk_sizes import fixed, next_chunk_size
from videogen_server.archive.local_read import LocalObjectRead, open_local, safe_key
from videogen_server.archive.partial_files import remove_stale_partials

if TYPE_CHECKING:
    from obstore.store import ClientConfig, ObjectStore, RetryConfig

__all__ = ["ObjectStoreArchive", "describe_archive_url"]

MiB = 1024 * 1024
log = logging.getLogger(__name__)

PROBE_PREFIX = ".videogen-probe/"
_PROBE_BYTES = b"videogen archive probe\n"


def describe_archive_url(url: str) -> str:
    """``file:///abs/dir`` or ``s3://bucket/prefix``, without any userinfo (the start-up log line)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return "file://" + parts.path.rstrip("/") if parts.path != "/" else "file:///"
    host = parts.hostname or ""
    prefix = parts.path.strip("/")
    return f"{parts.scheme}://{host}/{prefix}" if prefix else f"{parts.scheme}://{host}"


class _PutAborted(Exception):
    """Raised into obstore's upload from the input side, so that it aborts the upload (see `put`)."""


class _Source:
    """The chunks a put uploads, as obstore pulls them.

    Remembers an exception raised by `chunks` (so `put` lets exactly that one out), and can be aborted:
    the pending pull from `chunks` is cancelled and obstore gets `_PutAborted`, then aborts the upload."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = aiter(chunks)
        self._pull: asyncio.Future[bytes] | None = None
        self._aborted = False
        self.raised: BaseException | None = None

    def __aiter__(self) -> _Source:
        return self

    async def __anext__(self) -> bytes:
        if self._aborted:
            raise _PutAborted
        self._pull = asyncio.ensure_future(anext(self._chunks))
        try:
            return await self._pull
        except StopAsyncIteration:
            raise
        except asyncio.CancelledError:
            if self._aborted:
                raise _PutAborted from None
            raise
        except BaseException as exc:
            self.raised = exc
            raise
        finally:
            self._pull = None

    def abort(self) -> None:
        self._aborted = True
        if self._pull is not None:
            self._pull.cancel()


def _is_not_found(exc: BaseException) -> bool:
    # obstore raises the builtin FileNotFoundError for a missing object (its NotFoundError type exists too).
    return isinstance(exc, FileNotFoundError | NotFoundError)


_XML_CODE = re.compile(r"<Code>([A-Za-z0-9]+)</Code>")
_STATUS = re.compile(r"status code: (\d{3}(?: [A-Za-z ]+)?)")
_USERINFO = re.compile(r"//[^/@\s]*@")


def _cause(exc: BaseException) -> str:
    """One short line about what the library said: S3's error code and HTTP status when the store answered
    with one (NoSuchBucket, AccessDenied, SlowDown...), else its first line without any userinfo."""
    text = str(exc).strip()
    code = _XML_CODE.search(text)
    if code:
        status = _STATUS.search(text)
        return f"{code.group(1)} (HTTP {status.group(1).strip()})" if status else code.group(1)
    first = text.splitlines()[0] if text else ""
    first = _USERINFO.sub("//", first.split(": <?xml")[0]).strip()
    if len(first) > 240:
        first = first[:237] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class _ObjectRead:
    """OutputStreamLike over bytes [start, stop) of one object, fetched in segments, one ahead."""

    def __init__(
        self,
        archive: ObjectStoreArchive,
        store: ObjectStore,
        key: str,
        start: int,
        stop: int,
        total: int,
        content_type: str,
    ) -> None:
        self._archive = archive
        self._store = store
        self._key = key
        self._start = start
        self._stop = stop
        self._total = total
        self._content_type = content_type

    @property
    def total_size(self) -> int | None:
        return self._total

    @property
    def content_type(self) -> str:
        return self._content_type

    async def _segment(self, start: int, stop: int) -> memoryview:
        try:
            result = await obstore.get_async(self._store, self._key, options={"range": (start, stop)})
            data = await result.bytes_async()
        except Exception as exc:
            raise self._archive._error("read", self._key, exc) from None
        view = memoryview(data)
        if len(view) != stop - start:  # the object changed under us (it never should: a key is one output)
            raise errors.ArchiveUnavailable(
                f"archive {self._archive.description}: read of {self._key} returned {len(view)} bytes "
                f"for [{start}, {stop})"
            )
        return view

    def iter_chunks(self, chunk_size: int) -> AsyncIterator[bytes | memoryview]:
        return self._iter(fixed(chunk_size), chunk_size)

    def iter_sized(self, next_size: Callable[[], int]) -> AsyncIterator[bytes | memoryview]:
        return self._iter(next_size, None)

    async def _iter(
        self, next_size: Callable[[], int], fixed: int | None
    ) -> AsyncIterator[bytes | memoryview]:
        # A fixed size: whole chunks per segment, so that every chunk but the last is exactly that size.
        # Sizes that vary: a chunk never spans two segments (the last of a segment may be shorter).
        read_segment = self._archive.read_segment
        segment = max(1, read_segment // fixed) * fixed if fixed else read_segment
        pos = self._start
        ahead: asyncio.Task[memoryview] | None = None
        try:
            while pos < self._stop:
                stop = min(pos + segment, self._stop)
                view = await ahead if ahead is not None else await self._segment(pos, stop)
                ahead = None
                if stop < self._stop:
                    ahead = asyncio.create_task(self._segment(stop, min(stop + segment, self._stop)))
                i = 0
                while i < len(view):
                    size = next_chunk_size(next_size)
                    # A view, not a copy: the one copy of the bytes is made where the message is encoded
                    # (api/content_wire.py). Measured: 1.29 -> 1.17 ms/MiB of server CPU for 256 MiB.
                    yield view[i : i + size]
                    i += size
                pos = stop
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(BaseException):
                    await ahead


class ObjectStoreArchive:
    """OutputArchive on obstore, for ``file:///abs/dir`` and ``s3://bucket[/prefix]`` URLs.

    The tuning arguments have defaults for a service; the tests make the timeouts short."""

    def __init__(
        self,
        url: str,
        *,
        part_size: int = 8 * MiB,
        put_concurrency: int = 2,
        read_segment: int = 4 * MiB,
        connect_timeout: float = 5.0,
        request_timeout: float = 60.0,
        max_retries: int = 3,
        retry_timeout: float = 20.0,
        abort_timeout: float = 10.0,
        default_content_type: str = "video/mp4",
        partial_max_age: float = 3600.0,
        local_read_threads: int = 4,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
                raise ValueError(f"a file archive is file:///absolute/dir, not {url!r}")
            self._local_root: str | None = parts.path.rstrip("/") or "/"
        elif parts.scheme == "s3":
            if not parts.hostname or parts.username or parts.password:
                raise ValueError("an S3 archive is s3://bucket[/prefix] (credentials go in AWS_* variables)")
            self._local_root = None
        else:
            raise ValueError(f"unsupported archive URL scheme {parts.scheme!r}")
        if part_size < 5 * MiB:
            raise ValueError("part_size below S3's 5 MiB minimum part")
        self._url = url
        self._description = describe_archive_url(url)
        self._part_size = part_size
        self._put_concurrency = put_concurrency
        self.read_segment = read_segment
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._max_retries = max_retries
        self._retry_timeout = retry_timeout
        self._abort_timeout = abort_timeout
        self._default_content_type = default_content_type
        self._store: ObjectStore | None = None
        self._closed = False
        self._partial_max_age = partial_max_age
        self._cleanup: asyncio.Task[None] | None = None
        # Local reads (archive/local_read.py): opens, and chunks not in the page cache, run on these.
        self._local_read_threads = local_read_threads
        self._readers: ThreadPoolExecutor | None = None

    @property
    def description(self) -> str:
        return self._description

    # -- lifecycle -------------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._closed:
            raise RuntimeError("the archive is closed")
        if self._store is not None:
            return
        try:
            store = await self._build()
        except errors.ArchiveUnavailable:
            raise
        except Exception as exc:
            raise errors.ArchiveUnavailable(
                f"archive {self._description} cannot be used: {_cause(exc)}", retry_after=None
            ) from None
        await self._probe(store)
        self._store = store
        if self._local_root is not None:
            # In the background: a large archive's walk must not delay start-up. Best effort, never fatal.
            self._cleanup = asyncio.create_task(
                self._remove_partials(self._local_root), name="archive cleanup"
            )

    async def _remove_partials(self, root: str) -> None:
        try:
            await asyncio.to_thread(remove_stale_partials, root, self._partial_max_age)
        except Exception:
            log.exception("archive: the clean-up of partial files failed")

    async def _build(self) -> ObjectStore:
        if self._local_root is not None:
            root = self._local_root
            try:
                await asyncio.to_thread(os.makedirs, root, exist_ok=True)
            except OSError as exc:
                raise errors.ArchiveUnavailable(
                    f"archive {self._description} cannot be used: cannot create the directory "
                    f"({exc.strerror or type(exc).__name__})",
                    retry_after=None,
                ) from None
            return LocalStore(root)
        client: ClientConfig = {
            # Whatever scheme AWS_ENDPOINT_URL names is used: http:// is for a local S3-compatible server
            # (MinIO, moto); without an endpoint, AWS's own is https.
            "allow_http": True,
            "connect_timeout": timedelta(seconds=self._connect_timeout),
            "timeout": timedelta(seconds=self._request_timeout),
        }
        retry: RetryConfig = {
            "max_retries": self._max_retries,
            "retry_timeout": timedelta(seconds=self._retry_timeout),
            "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2)},
        }
        return S3Store.from_url(self._url, client_options=client, retry_config=retry)

    async def _probe(self, store: ObjectStore) -> None:
        """Write, read back and delete a small object: what every copy will need, proved at start-up."""
        key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        step = "write"
        try:
            await obstore.put_async(store, key, _PROBE_BYTES)
            step = "read back"
            got = bytes(await (await obstore.get_async(store, key)).bytes_async())
            if got != _PROBE_BYTES:
                raise errors.ArchiveUnavailable(
                    f"archive {self._description} cannot be used: a probe object read back differently",
                    retry_after=None,
                )
            step = "delete"
            await obstore.delete_async(store, key)
        except errors.ArchiveUnavailable:
            raise
        except Exception as exc:
            raise errors.ArchiveUnavailable(
                f"archive {self._description} cannot be used: probe {step} failed: {_cause(exc)}",
                retry_after=None,
            ) from None

    async def close(self) -> None:
        if self._closed:
            raise RuntimeError("the archive is closed")
        self._closed = True
        if self._cleanup is not None:
            self._cleanup.cancel()  # its thread finishes the walk on its own; nothing waits for it
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleanup
        self._store = None  # obstore's clients hold no threads of ours: dropping the store releases them
        if self._readers is not None:
            self._readers.shutdown(wait=False)  # a read still running ends by itself, then its thread
            self._readers = None

    # -- OutputArchive ---------------------------------------------------------------------------------

    async def put(self, key: str, chunks: AsyncIterator[bytes], *, content_type: str) -> None:
        store = self._usable()
        attributes: dict[str, str] | None = None
        if self._local_root is None and content_type:
            attributes = {"Content-Type": content_type}
        # Always obstore's multipart path, even for a small object (one part) or an empty one: it is the
        # path that can be aborted. A single PUT cannot: on a directory it runs in a blocking thread that
        # a cancellation does not stop, so the object would land after `put` said it was cancelled.
        source = _Source(chunks)
        upload = asyncio.ensure_future(
            obstore.put_async(
                store,
                key,
                source,
                attributes=attributes,
                chunk_size=self._part_size,
                max_concurrency=self._put_concurrency,
            )
        )
        try:
            await asyncio.shield(upload)
        except asyncio.CancelledError:
            if not upload.done():
                # Fail the input so that obstore aborts the multipart upload / removes its temp file,
                # and wait a bounded time for that; only then drop the upload.
                source.abort()
                await asyncio.wait({upload}, timeout=self._abort_timeout)
                if not upload.done():
                    upload.cancel()
            if upload.done() and not upload.cancelled():
                upload.exception()  # retrieved: the cancellation is what the caller gets
            raise
        except Exception as exc:
            if source.raised is not None:
                raise source.raised from None  # from `chunks`: as it is (the traceback is kept)
            raise self._error("write", key, exc, reads=False) from None

    @asynccontextmanager
    async def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[_ObjectRead | LocalObjectRead]:
        store = self._usable()
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad range [{start}, {end})")
        if self._local_root is not None and safe_key(key):
            # A directory: read the file directly (archive/local_read.py says why), not through obstore.
            async with self._open_local(key, start, end) as local:
                yield local
            return
        try:
            # A HEAD that also returns the attributes (the Content-Type on S3).
            head = await obstore.get_async(store, key, options={"head": True})
        except Exception as exc:
            raise self._error("read", key, exc) from None
        size = int(head.meta["size"])
        if size > 0 and start >= size:
            raise errors.OutOfRange(f"offset {start} is past the end of the output ({size} bytes)")
        stop = size if end is None else min(end, size)
        content_type = str(head.attributes.get("Content-Type") or self._default_content_type)
        yield _ObjectRead(self, store, key, start, max(start, stop), size, content_type)

    @asynccontextmanager
    async def _open_local(self, key: str, start: int, end: int | None) -> AsyncIterator[LocalObjectRead]:
        assert self._local_root is not None
        if self._readers is None:
            self._readers = ThreadPoolExecutor(
                max_workers=self._local_read_threads, thread_name_prefix="archive-read"
            )

        def describe(op: str) -> str:
            return f"archive {self._description}: {op} of {key}"

        opened = await open_local(os.path.join(self._local_root, key), self._readers, describe)
        if opened is None:
            raise errors.ArchiveObjectMissing(f"archive {self._description} has no object {key}")
        fd, size = opened
        read = LocalObjectRead(
            fd,
            start=start,
            stop=max(start, size if end is None else min(end, size)),
            total=size,
            content_type=self._default_content_type,  # a local multipart put keeps no attributes
            executor=self._readers,
            describe=describe,
        )
        try:
            if size > 0 and start >= size:
                raise errors.OutOfRange(f"offset {start} is past the end of the output ({size} bytes)")
            yield read
        finally:
            read.close()

    async def size(self, key: str) -> int | None:
        store = self._usable()
        try:
            meta = await obstore.head_async(store, key)
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise self._error("head", key, exc) from None
        return int(meta["size"])

    async def delete(self, key: str) -> None:
        store = self._usable()
        try:
            await obstore.delete_async(store, key)
        except Exception as exc:
            if _is_not_found(exc):
                return  # the local store says so; S3 answers 204 either way
            raise self._error("delete", key, exc, reads=False) from None

    # -- helpers ---------------------------------------------------------------------------------------

    def _usable(self) -> Any:
        if self._closed:
            raise RuntimeError("the archive is closed")
        if self._store is None:
            raise RuntimeError("the archive is not open (call open() first)")
        return self._store

    def _error(self, op: str, key: str, exc: BaseException, *, reads: bool = True) -> errors.VideogenError:
        """Map what obstore raised. Not found means a missing object only on reads: on a write it means the
        bucket is gone, which is the archive being unavailable."""
        if reads and _is_not_found(exc):
            return errors.ArchiveObjectMissing(f"archive {self._description} has no object {key}")
        return errors.ArchiveUnavailable(f"archive {self._description}: {op} of {key} failed: {_cause(exc)}")
