"""Reads of a local-directory archive (archive/local_read.py), on a real temporary directory: what the
OutputArchive contract tests (test_archive.py) do not show.

- A chunk that is not in the page cache is read on a worker thread, never on the event loop; a cached one
  is read on the loop. A file system without non-blocking reads gets every chunk from a thread.
- An object replaced while it is read (a copy redone) is read whole from the file that was opened.
- A read holds one chunk, not segments read ahead: many open reads stay small (the 50 slow readers of
  bench/slow_readers.py held ~380 MiB before).
- A cancelled read releases its file, also when a read of it is still running on a thread.
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from unit.test_archive import CHUNK, MiB, chunks_of, pattern
from videogen_server.archive import local_read
from videogen_server.archive.local_read import safe_key
from videogen_server.archive.object_store import ObjectStoreArchive

KEY = "videos/v/0.mp4"


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[ObjectStoreArchive]:
    archive = ObjectStoreArchive(f"file://{tmp_path}/archive")
    await archive.open()
    archive.root = tmp_path / "archive"  # type: ignore[attr-defined]
    yield archive
    await archive.close()


class ThreadReads:
    """Counts the reads that went to a worker thread (and checks they ran off the event loop's thread)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.loop_thread = threading.get_ident()
        self.on_loop = 0
        inner = local_read._wait_and_read

        def counted(*args: Any) -> int:
            self.calls += 1
            if threading.get_ident() == self.loop_thread:
                self.on_loop += 1
            return inner(*args)

        monkeypatch.setattr(local_read, "_wait_and_read", counted)


def evict(path: Path) -> None:
    """Drops the file's pages from the page cache (written back first), as after a reboot."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


async def read_all(archive: ObjectStoreArchive, key: str = KEY, *, start: int = 0) -> bytes:
    async with archive.open_read(key, start=start) as stream:
        return b"".join([bytes(c) async for c in stream.iter_chunks(CHUNK)])


@pytest.mark.skipif(getattr(os, "RWF_NOWAIT", None) is None, reason="no RWF_NOWAIT on this platform")
async def test_chunks_not_in_the_page_cache_are_read_on_a_thread(
    archive: ObjectStoreArchive, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = pattern(4 * MiB, seed=1)
    await archive.put(KEY, chunks_of(data), content_type="video/mp4")
    evict(archive.root / KEY)  # type: ignore[attr-defined]
    threads = ThreadReads(monkeypatch)
    assert await read_all(archive, start=5) == data[5:]
    assert threads.calls >= 1, "an uncached chunk must wait for the disk on a thread"
    assert threads.on_loop == 0
    # Now every page is cached: read on the loop, no thread at all.
    threads.calls = 0
    assert await read_all(archive) == data
    assert threads.calls == 0


async def test_without_non_blocking_reads_every_chunk_is_read_on_a_thread(
    archive: ObjectStoreArchive, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = pattern(MiB + 7, seed=2)
    await archive.put(KEY, chunks_of(data), content_type="video/mp4")
    preadv = os.preadv

    def no_nowait(fd: int, buffers: Any, offset: int, flags: int = 0) -> int:
        if flags:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return preadv(fd, buffers, offset)

    monkeypatch.setattr(local_read.os, "preadv", no_nowait)
    threads = ThreadReads(monkeypatch)
    assert await read_all(archive) == data
    assert threads.calls == 5  # 4 whole chunks and 7 bytes
    assert threads.on_loop == 0


async def test_a_replaced_object_is_read_whole_from_the_file_opened(archive: ObjectStoreArchive) -> None:
    old, new = pattern(2 * MiB, seed=3), pattern(2 * MiB, seed=4)
    await archive.put(KEY, chunks_of(old), content_type="video/mp4")
    got = bytearray()
    async with archive.open_read(KEY) as stream:
        async for chunk in stream.iter_chunks(CHUNK):
            if not got:
                await archive.put(KEY, chunks_of(new), content_type="video/mp4")  # renamed over the key
            got += chunk
    assert got == old
    assert await read_all(archive) == new


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.alone  # this process's RSS: nothing else may run in it meanwhile
async def test_open_reads_hold_one_chunk_each(archive: ObjectStoreArchive) -> None:
    """24 reads of a 16 MiB object, each paused after its first chunk, grow RSS by far less than the
    24 x 8 MiB that 4 MiB segments with one read ahead held (loosely: under 48 MiB; one chunk each is 6)."""
    data = pattern(16 * MiB, seed=5)
    await archive.put(KEY, chunks_of(data), content_type="video/mp4")
    await read_all(archive)  # warm: the page cache, the code paths, the thread pool
    release = asyncio.Event()
    first = asyncio.Semaphore(0)

    async def reader() -> int:
        count = 0
        async with archive.open_read(KEY) as stream:
            async for chunk in stream.iter_chunks(CHUNK):
                count += len(chunk)
                if count == CHUNK:
                    first.release()
                    await release.wait()
        return count

    base = rss()
    tasks = [asyncio.create_task(reader()) for _ in range(24)]
    for _ in tasks:
        await first.acquire()
    await asyncio.sleep(0.2)  # anything read ahead has landed by now
    growth = rss() - base
    release.set()
    assert await asyncio.gather(*tasks) == [len(data)] * 24
    assert growth < 48 * MiB, f"24 paused reads grew RSS by {growth / MiB:.1f} MiB"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_cancelled_read_releases_its_file(
    archive: ObjectStoreArchive, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = pattern(2 * MiB, seed=6)
    await archive.put(KEY, chunks_of(data), content_type="video/mp4")
    await read_all(archive)
    before = open_fds()
    # Cancelled between chunks.
    got_one = asyncio.Event()

    async def reader() -> None:
        async with archive.open_read(KEY) as stream:
            async for _ in stream.iter_chunks(CHUNK):
                got_one.set()
                await asyncio.sleep(3600)

    task = asyncio.create_task(reader())
    await got_one.wait()
    assert open_fds() == before + 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert open_fds() == before
    # Cancelled while a chunk is read on a thread: the file stays open until that read is done.
    started, unblock = threading.Event(), threading.Event()
    inner = local_read._wait_and_read

    def slow(*args: Any) -> int:
        started.set()
        unblock.wait(10)
        return inner(*args)

    monkeypatch.setattr(local_read, "_wait_and_read", slow)
    monkeypatch.setattr(local_read, "_NOWAIT", None)  # every chunk from the thread
    task = asyncio.create_task(read_all(archive))
    await asyncio.to_thread(started.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert open_fds() == before + 1, "closed while a thread still reads it (its number could be reused)"
    unblock.set()
    for _ in range(100):
        if open_fds() == before:
            break
        await asyncio.sleep(0.02)
    assert open_fds() == before


def test_only_plain_keys_take_the_direct_path() -> None:
    assert safe_key("videos/0b6c1f0e-5d4a-4c1e-9a57-1f2e3d4c5b6a/0.mp4")
    for key in ("../etc/passwd", "a/../b", "./a", "a//b", "/abs", "a b", "a%20b", "é", ""):
        assert not safe_key(key), key
