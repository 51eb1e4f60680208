"""Resumable downloads, deadlines and retry policy, shared by the sync and the async client.

A download writes to ``path + ".part"`` and only a verified file is renamed (atomically, ``os.replace``)
to ``path``: a short or corrupt file never appears at ``path``. An interrupted download leaves the
``.part`` file behind; the next download of the same path resumes from its size with
``StreamContentRequest.offset``. Nothing proves that an old ``.part`` belongs to the same video: the
final size check against the server's ``total_size`` is the guard, so don't reuse a path for different
videos while a ``.part`` of another is lying around.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

import grpc
from videogen.v1 import video_service_pb2

from .errors import DataLoss, DeadlineExceeded, VideogenError

T = TypeVar("T")

ProgressCallback = Callable[[int, "int | None"], object]
"""``on_progress(bytes_done, total_bytes_or_None)``, called after every chunk (bytes_done includes what a
resumed ``.part`` file already held)."""

PART_SUFFIX = ".part"
# The most bytes handed to one write() call. Measured on the 2-core VMs this was built on (Linux 6.18,
# ext4; issue 11), writing 256 MiB to a new file, system time: in 2, 4 or 8 MiB writes 0.70-0.83 s every
# time; in 1 MiB writes 0.10 s in one hour and 0.27 s the next; in 256 or 512 KiB writes 0.08-0.20 s
# (the kernel's copy into page-cache folios as large as the write, memory the host has to back afresh).
# The async download with 4 MiB writes: 4.5 ms of CPU per MiB; 1 MiB: 2.4-3.9; 256 KiB: 1.5-1.9. Small
# writes cost nothing elsewhere (1,024 system calls for 256 MiB).
MAX_WRITE = 256 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """How the clients retry: unary calls on UNAVAILABLE, streams (watch, content) on UNAVAILABLE,
    DEADLINE_EXCEEDED (within the caller's own deadline), ABORTED and transport resets.

    ``max_attempts`` bounds *consecutive* failures: a stream that made progress before breaking starts
    counting afresh. Backoff is exponential with jitter; a server-sent ``RetryInfo`` delay is honoured, but
    one longer than ``max_retry_after`` (e.g. Runway's daily cap) is not waited for: the error is raised."""

    max_attempts: int = 6
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0
    max_retry_after: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to sleep before retry number ``attempt`` (1-based), or None to give up."""
        if attempt >= self.max_attempts:
            return None
        if retry_after is not None and retry_after > 0:
            return retry_after if retry_after <= self.max_retry_after else None
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return random.uniform(base / 2, base)


NO_RETRY = RetryPolicy(max_attempts=1)


class Deadline:
    """An overall deadline for one client method (which may make several calls)."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._at = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        return None if self._at is None else self._at - time.monotonic()

    def call_timeout(self) -> float | None:
        """The timeout for the next call; raises DeadlineExceeded when none is left."""
        left = self.remaining()
        if left is not None and left <= 0:
            raise DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED, f"timed out after {self.timeout:g}s")
        return left

    def allows(self, delay: float) -> bool:
        left = self.remaining()
        return left is None or delay < left


_STREAM_RETRY_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}
)


def is_retryable_unary(err: VideogenError) -> bool:
    return err.code == grpc.StatusCode.UNAVAILABLE


def is_retryable_stream(err: VideogenError) -> bool:
    """Streams also retry transport resets, which surface as INTERNAL/UNKNOWN without an ``ErrorInfo``
    (every status the server itself sends carries one, so those are never retried)."""
    if err.code in _STREAM_RETRY_CODES:
        return True
    return err.code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN) and not err.reason


class PartialDownload:
    """The on-disk state of one download. Use ``start_stream`` with the first message of every stream,
    ``write`` with each message's offset and data, then ``finish`` (verifies, fsyncs, renames) or ``close``
    (keeps the ``.part`` for a later resume)."""

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = True) -> None:
        self.path = os.fspath(path)
        self.part_path = self.path + PART_SUFFIX
        if not resume:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.part_path)
        try:
            self.offset = os.path.getsize(self.part_path)
        except FileNotFoundError:
            self.offset = 0
        self.resumed_from = self.offset
        self.total: int | None = None
        self.content_type = ""
        self._fh: BinaryIO | None = None

    def request(self, video_id: str, index: int) -> video_service_pb2.StreamContentRequest:
        return video_service_pb2.StreamContentRequest(id=video_id, index=index, offset=self.offset)

    def start_stream(self, first: video_service_pb2.StreamContentResponse) -> None:
        if first.content_type:
            self.content_type = first.content_type
        if first.total_size > 0:
            if self.total is not None and self.total != first.total_size:
                self.discard()
                raise DataLoss(
                    grpc.StatusCode.DATA_LOSS,
                    f"the content's size changed during the download ({self.total} then "
                    f"{first.total_size} bytes); start again",
                )
            self.total = first.total_size
            if self.offset > self.total:
                size = self.offset
                self.discard()
                raise DataLoss(
                    grpc.StatusCode.DATA_LOSS,
                    f"{self.part_path} holds {size} bytes but the content has {first.total_size}; removed it",
                )

    def write(self, offset: int, data: bytes | memoryview) -> None:
        """Appends ``data``, which the server sent at ``offset`` (a view into the received message: see
        content_wire.py)."""
        if not data:
            return
        if offset != self.offset:
            raise DataLoss(
                grpc.StatusCode.DATA_LOSS, f"the server sent bytes at {offset}, expected {self.offset}"
            )
        if self.total is not None and self.offset + len(data) > self.total:
            self.discard()
            raise DataLoss(
                grpc.StatusCode.DATA_LOSS, f"the server sent more than the announced {self.total} bytes"
            )
        if self._fh is None:
            parent = os.path.dirname(self.part_path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            self._fh = open(self.part_path, "ab")  # noqa: SIM115 (closed by close/finish)
        if len(data) <= MAX_WRITE:
            self._fh.write(data)
        else:
            view = memoryview(data)
            for at in range(0, len(view), MAX_WRITE):
                self._fh.write(view[at : at + MAX_WRITE])
        self.offset += len(data)

    def write_all(self, pieces: list[tuple[int, bytes | memoryview]]) -> None:
        """``write`` of each (offset, data) in order."""
        for offset, data in pieces:
            self.write(offset, data)

    def complete(self) -> bool:
        """Whether a stream that ended OK delivered everything (always true when the size is unknown:
        the server never ends a short stream with OK)."""
        return self.total is None or self.offset == self.total

    def finish(self) -> int:
        """Verifies, flushes to disk and atomically renames the ``.part`` to ``path``; returns the size."""
        if not self.complete():
            raise DataLoss(
                grpc.StatusCode.DATA_LOSS, f"only {self.offset} of {self.total} bytes were received"
            )
        if self._fh is None:  # nothing written by this call (empty content, or a complete .part)
            self._fh = open(self.part_path, "ab")  # noqa: SIM115
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        os.replace(self.part_path, self.path)
        return self.offset

    def close(self) -> None:
        """Closes the file, keeping the ``.part`` for a later resume."""
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.flush()
            self._fh.close()
            self._fh = None

    def discard(self) -> None:
        """Deletes the ``.part`` and starts over from byte 0."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.part_path)
        self.offset = 0
        self.resumed_from = 0
        self.total = None


class AsyncPartialDownload:
    """:class:`PartialDownload` for asyncio: the same state, checks and resume rules, with every file
    operation (stat, unlink, mkdir, open, write, fsync, rename, close) run on a worker thread, never on the
    event loop.

    Writes are batched: a message's bytes are copied into one buffer of WRITE_BATCH bytes, which goes to the
    thread in one hop once full (or when the stream ends, ``flush``), and to the file in writes of
    MAX_WRITE bytes (one 4 MiB write cost up to 7x the kernel time of sixteen 256 KiB ones: see MAX_WRITE;
    it was most of what this class cost, 4.5 ms/MiB against 1.5 for the sync client's download). Copied,
    not kept: holding the received messages until their batch was written freed 4 MiB of 256 KiB blocks
    at a time, which glibc's malloc gives back to the kernel and then takes again, page by page, for the
    next batch.
    Measured on 256 MiB (issue 11): 1.83 ms of CPU per MiB, and 1.18 for the same code with malloc's trim
    and mmap thresholds raised (GLIBC_TUNABLES), i.e. the churn cost more than receiving. The copy costs
    ~0.05 ms/MiB, and each message is freed when the next one arrives. (A hop per message instead of a
    batch cost about as much CPU as receiving it.) Memory held: the buffer plus one message. ``offset``
    counts the pending bytes too; ``request`` (a resume) must follow a ``flush``, which ``download`` does
    at the start of every stream.

    The download's file operations run one at a time, in order, on one thread of its own, so even when the
    awaiting task is cancelled mid-write the ``close`` queued after it runs only once that write is done.
    Create it with ``await AsyncPartialDownload.open(path, resume=...)`` and always ``await close()``
    (also after ``finish``): it writes what is pending, then releases the thread."""

    WRITE_BATCH = 4 * 1024 * 1024

    def __init__(self, part: PartialDownload, executor: ThreadPoolExecutor) -> None:
        self._part = part
        self._executor = executor
        self._buffer: bytearray | None = None  # WRITE_BATCH bytes, allocated on the first write
        self._filled = 0  # bytes of the buffer in use
        # What is pending, in order: (offset, start, size, None) for a run of bytes at buffer[start:], or
        # (offset, 0, size, data) for a message too big for it. Runs split only where the offsets do (a
        # gap is reported as PartialDownload.write reports it, when written).
        self._pending: list[tuple[int, int, int, bytes | memoryview | None]] = []
        self._pending_size = 0

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, resume: bool = True) -> AsyncPartialDownload:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="videogen-download")
        try:
            part = await asyncio.get_running_loop().run_in_executor(
                executor, functools.partial(PartialDownload, path, resume=resume)
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(part, executor)

    async def _run(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    @property
    def offset(self) -> int:
        return self._part.offset + self._pending_size

    @property
    def total(self) -> int | None:
        return self._part.total

    @total.setter
    def total(self, value: int | None) -> None:
        self._part.total = value

    def request(self, video_id: str, index: int) -> video_service_pb2.StreamContentRequest:
        if self._pending:
            raise RuntimeError("flush() before request(): the resume offset is what is on disk")
        return self._part.request(video_id, index)

    def complete(self) -> bool:
        return self.total is None or self.offset == self.total

    async def start_stream(self, first: video_service_pb2.StreamContentResponse) -> None:
        await self._run(functools.partial(self._part.start_stream, first))

    async def write(self, offset: int, data: bytes | memoryview) -> None:
        size = len(data)
        if not size:
            return
        if self._filled + size > self.WRITE_BATCH:
            await self.flush()
        if size > self.WRITE_BATCH:  # bigger than a batch (the server's chunk size is smaller): as it is
            self._pending.append((offset, 0, size, data))
            self._pending_size += size
            await self.flush()
            return
        if self._buffer is None:
            self._buffer = bytearray(self.WRITE_BATCH)
        start = self._filled
        self._buffer[start : start + size] = data
        self._filled += size
        run = self._pending[-1] if self._pending else None
        if run is not None and run[3] is None and run[0] + run[2] == offset and run[1] + run[2] == start:
            self._pending[-1] = (run[0], run[1], run[2] + size, None)  # the run goes on
        else:
            self._pending.append((offset, start, size, None))
        self._pending_size += size
        if self._pending_size >= self.WRITE_BATCH:
            await self.flush()

    def _take_pending(self) -> list[tuple[int, bytes | memoryview]]:
        """The pending bytes as (offset, data) pieces (views into the buffer), pending emptied."""
        view = memoryview(self._buffer if self._buffer is not None else b"")
        pieces = [
            (offset, view[start : start + size] if data is None else data)
            for offset, start, size, data in self._pending
        ]
        self._pending, self._pending_size, self._filled = [], 0, 0
        return pieces

    async def flush(self) -> None:
        """Writes the pending bytes (checked in order, as ``PartialDownload.write`` does)."""
        if not self._pending:
            return
        pieces = self._take_pending()
        try:
            await self._run(functools.partial(self._part.write_all, pieces))
        except BaseException:
            # The thread may still be writing from the buffer (a cancelled wait): never refill it.
            self._buffer = None
            raise

    async def finish(self) -> int:
        await self.flush()
        return await self._run(self._part.finish)

    async def discard(self) -> None:
        self._pending, self._pending_size, self._filled = [], 0, 0
        await self._run(self._part.discard)

    async def close(self) -> None:
        try:
            # What was received is kept for a resume. The thread runs it even if this task is cancelled
            # now (the close below is queued after it).
            if self._pending:
                self._executor.submit(self._part.write_all, self._take_pending())
                self._buffer = None  # the thread writes from it
            await self._run(self._part.close)
        finally:
            self._executor.shutdown(wait=False)  # the thread ends once the queued operations are done
