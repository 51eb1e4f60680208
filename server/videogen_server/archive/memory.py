"""An output archive in this process's memory: the `OutputArchive` contract, nothing on disk.

Shipped (not a test helper) so that the archiver and the content relay can be exercised without a
directory or an S3 server, like `store.memory.MemoryVideoStore`. Objects are whole `bytes` in a dict, so it
is no archive for real videos; it honours the same atomicity as the real engines (a `put` stores its object
only once `chunks` is exhausted, so a put that fails, is cancelled or whose iterator raises stores nothing and
leaves a previous object under the key as it was).

Fault hooks for tests: set `fail_open`, `fail_puts` or `fail_reads` (plain attributes, any time) and the
matching calls raise `ArchiveUnavailable`, as a full disk or an S3 503 would. `fail_reads` is also checked
between chunks, so a read can be cut mid-way. `puts` and `reads` count calls that reached the engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from videogen_server import errors
from videogen_server.archive.chunk_sizes import fixed, next_chunk_size

__all__ = ["MemoryArchive"]


@dataclass(frozen=True)
class _Object:
    data: bytes
    content_type: str


class _MemoryRead:
    """OutputStreamLike over a slice of a stored object (a view: no copy of the whole object)."""

    def __init__(self, archive: MemoryArchive, obj: _Object, start: int, end: int) -> None:
        self._archive = archive
        self._view = memoryview(obj.data)[start:end]
        self._total = len(obj.data)
        self._content_type = obj.content_type

    @property
    def total_size(self) -> int | None:
        return self._total

    @property
    def content_type(self) -> str:
        return self._content_type

    def iter_chunks(self, chunk_size: int) -> AsyncIterator[bytes]:
        return self.iter_sized(fixed(chunk_size))

    async def iter_sized(self, next_size: Callable[[], int]) -> AsyncIterator[bytes]:
        pos = 0
        while pos < len(self._view):
            size = next_chunk_size(next_size)
            await asyncio.sleep(0)  # a real read awaits I/O between chunks: give others the same chances
            if self._archive.fail_reads:
                raise errors.ArchiveUnavailable("memory archive: read failed (fault injected)")
            yield bytes(self._view[pos : pos + size])
            pos += size


class MemoryArchive:
    """OutputArchive on a dict of key -> (bytes, content type)."""

    def __init__(self, *, description: str = "memory://") -> None:
        self._objects: dict[str, _Object] = {}
        self._description = description
        self._opened = False
        self._closed = False
        # Fault hooks (see the module docstring).
        self.fail_open = False
        self.fail_puts = False
        self.fail_reads = False
        self.puts = 0
        self.reads = 0

    @property
    def description(self) -> str:
        return self._description

    def keys(self) -> list[str]:
        """The keys stored now (for tests)."""
        return sorted(self._objects)

    async def open(self) -> None:
        self._check_not_closed()
        await asyncio.sleep(0)
        if self.fail_open:
            raise errors.ArchiveUnavailable(f"archive {self._description} cannot be written (fault injected)")
        self._opened = True

    async def close(self) -> None:
        self._check_not_closed()
        self._closed = True
        self._objects.clear()

    async def put(self, key: str, chunks: AsyncIterator[bytes], *, content_type: str) -> None:
        self._check_usable()
        self.puts += 1
        if self.fail_puts:
            raise errors.ArchiveUnavailable("memory archive: write failed (fault injected)")
        parts: list[bytes] = []
        async for chunk in chunks:  # an exception from `chunks` propagates as it is, storing nothing
            if self.fail_puts:
                raise errors.ArchiveUnavailable("memory archive: write failed (fault injected)")
            parts.append(bytes(chunk))
        self._check_usable()
        # The one step that makes the object visible: readers saw the old object (or none) until here.
        self._objects[key] = _Object(b"".join(parts), content_type)

    @asynccontextmanager
    async def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[_MemoryRead]:
        self._check_usable()
        await asyncio.sleep(0)
        if self.fail_reads:
            raise errors.ArchiveUnavailable("memory archive: read failed (fault injected)")
        obj = self._objects.get(key)
        if obj is None:
            raise errors.ArchiveObjectMissing(f"no archived object {key!r}")
        size = len(obj.data)
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad range [{start}, {end})")
        if size > 0 and start >= size:
            raise errors.OutOfRange(f"offset {start} is past the end of {key!r} ({size} bytes)")
        self.reads += 1
        yield _MemoryRead(self, obj, start, size if end is None else min(end, size))

    async def size(self, key: str) -> int | None:
        self._check_usable()
        await asyncio.sleep(0)
        if self.fail_reads:
            raise errors.ArchiveUnavailable("memory archive: read failed (fault injected)")
        obj = self._objects.get(key)
        return None if obj is None else len(obj.data)

    async def delete(self, key: str) -> None:
        self._check_usable()
        await asyncio.sleep(0)
        if self.fail_puts:
            raise errors.ArchiveUnavailable("memory archive: delete failed (fault injected)")
        self._objects.pop(key, None)

    def _check_not_closed(self) -> None:
        if self._closed:
            raise RuntimeError("the archive is closed")

    def _check_usable(self) -> None:
        self._check_not_closed()
        if not self._opened:
            raise RuntimeError("the archive is not open (call open() first)")
