"""The chunk sizes an archive read is given (`ArchiveRead.iter_chunks` and `iter_sized`, services/ports.py),
checked in one place for every engine: a size that is not positive would never advance a read."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["fixed", "next_chunk_size"]


def fixed(chunk_size: int) -> Callable[[], int]:
    """`iter_chunks`'s size as `iter_sized` asks for it; ValueError at once when it is not positive."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    return lambda: chunk_size


def next_chunk_size(next_size: Callable[[], int]) -> int:
    """The size `iter_sized`'s caller asks for the next chunk; ValueError when it is not positive."""
    size = next_size()
    if size <= 0:
        raise ValueError("a chunk size must be positive")
    return size
