"""Ranged reads of a local-directory archive's objects with pread, not obstore: what StreamContent of an
archived video spends per byte (issue 11's performance table).

Why not obstore here (it still writes, and serves S3): its LocalStore reads each range on a tokio thread
into a buffer of its own, about 0.25 ms of CPU per MiB where a pread costs 0.06, and the engine's 4 MiB
segments, one read ahead, held 8 MiB per stream (50 slow readers: ~380 MiB). Measured in
docs/benchmarks.md (issue 11).

Nothing here blocks the event loop on the disk. Each chunk is read on the loop with ``preadv2`` and
``RWF_NOWAIT`` (Linux 4.14+): the kernel copies the bytes from the page cache when they are all there, and
otherwise returns what it has (or EAGAIN) instead of waiting for the disk. The rest of that chunk is then
read on a worker thread, with a readahead hint (``POSIX_FADV_WILLNEED``) for the next few MiB so that the
chunks after it are in the cache. Where RWF_NOWAIT is not supported (another OS, a file system without
it), every chunk is read on a worker thread. Opening the file (a path lookup) happens on a thread too.

Memory: one chunk's buffer per stream, handed to the caller (the gRPC encoder copies it into the message
once); nothing is read ahead into the process.

The object's bytes: the file is opened once and read by its descriptor, so an object replaced meanwhile (a
copy redone writes a new file and renames it over the key) is read whole from the file that was opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor

from videogen_server import errors
from videogen_server.archive.chunk_sizes import fixed, next_chunk_size

__all__ = ["LocalObjectRead", "open_local", "safe_key"]

_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)  # None: no non-blocking buffered reads here
_READAHEAD = 8 * 1024 * 1024  # hinted ahead of a chunk that had to wait for the disk
_SAFE_KEY = re.compile(r"[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*")


def safe_key(key: str) -> bool:
    """Whether `key` names the file ``root/key`` exactly as obstore's LocalStore stores it (plain path
    segments: no percent-encoding, no ``.`` or ``..``). Other keys are left to obstore."""
    return _SAFE_KEY.fullmatch(key) is not None and not any(p in (".", "..") for p in key.split("/"))


def _read_into(fd: int, view: memoryview, position: int) -> int:
    """Blocking: fills `view` from `position` (fewer bytes only at the end of the file)."""
    got = 0
    while got < len(view):
        if hasattr(os, "preadv"):
            n = os.preadv(fd, [view[got:]], position + got)
        else:  # a platform without it (the service runs on Linux; this keeps a dev machine working)
            data = os.pread(fd, len(view) - got, position + got)
            n = len(data)
            view[got : got + n] = data
        if n == 0:
            break
        got += n
    return got


def _wait_and_read(fd: int, view: memoryview, position: int, hint_until: int) -> int:
    """On a worker thread: ask the kernel to read ahead, then read `view` (the disk is waited for)."""
    if hint_until > position:
        with contextlib.suppress(OSError, AttributeError):  # only a hint (and Linux's)
            os.posix_fadvise(fd, position, hint_until - position, os.POSIX_FADV_WILLNEED)
    return _read_into(fd, view, position)


class LocalObjectRead:
    """OutputStreamLike over bytes [start, stop) of one open file. `close` releases the descriptor (once a
    read still running on a thread for a cancelled caller is done)."""

    def __init__(
        self,
        fd: int,
        *,
        start: int,
        stop: int,
        total: int,
        content_type: str,
        executor: ThreadPoolExecutor,
        describe: Callable[[str], str],
        nowait: bool = True,
    ) -> None:
        self._fd = fd
        self._start = start
        self._stop = stop
        self._total = total
        self._content_type = content_type
        self._executor = executor
        self._describe = describe  # "archive file:///dir: read of KEY" (for error messages)
        self._nowait = nowait and _NOWAIT is not None
        self._on_thread: Future[int] | None = None  # a read running on a worker thread
        self._closed = False

    @property
    def total_size(self) -> int | None:
        return self._total

    @property
    def content_type(self) -> str:
        return self._content_type

    def iter_chunks(self, chunk_size: int) -> AsyncIterator[bytes | memoryview]:
        return self.iter_sized(fixed(chunk_size))

    async def iter_sized(self, next_size: Callable[[], int]) -> AsyncIterator[bytes | memoryview]:
        position = self._start
        while position < self._stop:
            size = min(next_chunk_size(next_size), self._stop - position)
            buffer = bytearray(size)  # a fresh one per chunk: the caller may keep what it was given
            view = memoryview(buffer)
            got = self._read_cached(view, position)
            if got < size:
                got += await self._read_waiting(view[got:], position + got)
            if got != size:  # the file is shorter than it was when opened: it never should be
                raise errors.ArchiveUnavailable(
                    f"{self._describe('read')} ended at byte {position + got}, expected {self._stop}"
                )
            yield view
            position += size

    def _read_cached(self, view: memoryview, position: int) -> int:
        """On the loop: what the page cache holds from `position` on, without waiting for the disk (0 when
        the first page is not there, or non-blocking reads are not available)."""
        if not self._nowait:
            return 0
        assert _NOWAIT is not None
        try:
            return os.preadv(self._fd, [view], position, _NOWAIT)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                self._nowait = False  # this file system does not do it: threads from now on
                return 0
            raise errors.ArchiveUnavailable(f"{self._describe('read')} failed: {exc.strerror}") from None

    async def _read_waiting(self, view: memoryview, position: int) -> int:
        """On a worker thread: `view` from `position`, waiting for the disk as needed."""
        hint = min(self._stop, position + _READAHEAD) if self._nowait else position
        future = self._executor.submit(_wait_and_read, self._fd, view, position, hint)
        self._on_thread = future
        try:
            return await asyncio.wrap_future(future)
        except OSError as exc:
            raise errors.ArchiveUnavailable(f"{self._describe('read')} failed: {exc.strerror}") from None
        finally:
            if future.done():
                self._on_thread = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        pending = self._on_thread
        if pending is not None and not pending.done():
            # A cancelled caller left a read running: the descriptor is closed once it is done, so that
            # it never reads from a number reused meanwhile.
            pending.add_done_callback(lambda _: os.close(self._fd))
        else:
            os.close(self._fd)


def _open(path: str) -> tuple[int, int]:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        return fd, os.fstat(fd).st_size
    except BaseException:
        os.close(fd)
        raise


async def open_local(
    path: str, executor: ThreadPoolExecutor, describe: Callable[[str], str]
) -> tuple[int, int] | None:
    """(descriptor, size) of the file at `path`, opened on a worker thread; None when there is no such
    file. Any other OSError is ArchiveUnavailable."""
    future = executor.submit(_open, path)
    try:
        return await asyncio.wrap_future(future)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise errors.ArchiveUnavailable(f"{describe('read')} failed: {exc.strerror}") from None
    except asyncio.CancelledError:
        future.add_done_callback(_close_opened)  # an open still running: its descriptor is closed after
        raise


def _close_opened(future: Future[tuple[int, int]]) -> None:
    if not future.cancelled() and future.exception() is None:
        os.close(future.result()[0])
