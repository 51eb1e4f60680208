"""Upload's client stream: a local file as UploadRequest messages (the first one names it and gives its size),
read a chunk at a time, never whole in memory. The async form reads each chunk in a worker thread."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from videogen.v1 import video_service_pb2

UPLOAD_CHUNK = 512 * 1024
"""Bytes per message (the server's limit is far above: 256 KiB..1 MiB keeps per-message overhead low
without holding much in memory)."""
MIN_UPLOAD_CHUNK = 64 * 1024
MAX_UPLOAD_CHUNK = 1024 * 1024

UploadProgress = Callable[[int, int], object]
"""``progress(bytes_sent, total_bytes)``, called after each chunk is handed to gRPC."""


def _check_chunk(chunk_size: int) -> int:
    if not MIN_UPLOAD_CHUNK <= chunk_size <= MAX_UPLOAD_CHUNK:
        raise ValueError(f"chunk_size must be {MIN_UPLOAD_CHUNK}..{MAX_UPLOAD_CHUNK} bytes")
    return chunk_size


def check_readable(path: str | os.PathLike[str]) -> None:
    """Open `path` for reading once, before any call: a missing or unreadable file is the caller's OSError
    (FileNotFoundError, PermissionError, IsADirectoryError), not an RPC that fails while gRPC iterates."""
    with Path(path).open("rb"):
        pass


def _first(path: Path, filename: str | None, content_type: str, size: int) -> video_service_pb2.UploadRequest:
    return video_service_pb2.UploadRequest(
        filename=path.name if filename is None else filename, content_type=content_type, size_bytes=size
    )


def upload_messages(
    path: str | os.PathLike[str],
    *,
    filename: str | None = None,
    content_type: str = "",
    chunk_size: int = UPLOAD_CHUNK,
    progress: UploadProgress | None = None,
) -> Iterator[video_service_pb2.UploadRequest]:
    """The messages of one upload of `path` (opened when iteration starts: a retry iterates afresh)."""
    p = Path(path)
    _check_chunk(chunk_size)
    with p.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        first: video_service_pb2.UploadRequest | None = _first(p, filename, content_type, size)
        sent = 0
        while True:
            data = f.read(chunk_size)
            if not data and first is None:
                return
            message = first if first is not None else video_service_pb2.UploadRequest()
            first = None
            message.data = data
            yield message
            sent += len(data)
            if progress is not None and data:
                progress(sent, size)
            if not data:
                return


async def aupload_messages(
    path: str | os.PathLike[str],
    *,
    filename: str | None = None,
    content_type: str = "",
    chunk_size: int = UPLOAD_CHUNK,
    progress: UploadProgress | None = None,
) -> AsyncIterator[video_service_pb2.UploadRequest]:
    """upload_messages for asyncio: every file operation runs in a worker thread."""
    p = Path(path)
    _check_chunk(chunk_size)
    f: BinaryIO = await asyncio.to_thread(p.open, "rb")
    try:
        size = (await asyncio.to_thread(os.fstat, f.fileno())).st_size
        first: video_service_pb2.UploadRequest | None = _first(p, filename, content_type, size)
        sent = 0
        while True:
            data = await asyncio.to_thread(f.read, chunk_size)
            if not data and first is None:
                return
            message = first if first is not None else video_service_pb2.UploadRequest()
            first = None
            message.data = data
            yield message
            sent += len(data)
            if progress is not None and data:
                progress(sent, size)
            if not data:
                return
    finally:
        await asyncio.to_thread(f.close)
