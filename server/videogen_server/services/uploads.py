"""Upload: a caller's local image or video, streamed to us in pieces, into the provider's ephemeral storage
(issue 12). The use case behind the client-streaming Upload RPC.

The bytes are spooled to a temporary file (never whole in memory: up to 200 MB), written and hashed in a
worker thread, checked (size 512 B..200 MB; the real type from the first bytes, which a declared type or the
filename's extension must agree with), and only then handed to the provider. Every refusal happens before
any provider call, and as early as the stream allows (a declared size or type at once; a wrong type after
its first bytes; too many bytes as soon as they arrive). The temporary file is removed in every case:
success, refusal, provider error, or a caller who went away (the call is cancelled).

Disk is bounded: the bytes spooled by all uploads in flight are capped (VIDEOGEN_UPLOAD_SPOOL_BYTES). An
upload that would pass the cap is refused RESOURCE_EXHAUSTED at once; the others go on.

The key that uploaded the file is kept in the store (services/upload_keys.py) before the URI is returned:
a Generate naming it is then created with that key, on any replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Final

from videogen_server import errors
from videogen_server.domain import media_type
from videogen_server.domain.media_type import MediaType
from videogen_server.services.ports import VideoProvider
from videogen_server.services.upload_keys import UploadKeys

log = logging.getLogger(__name__)

MIN_UPLOAD_BYTES: Final = 512
MAX_UPLOAD_BYTES: Final = 200 * 1000 * 1000  # Runway's "200 MB" (runway-api.md §2.2)
FILENAME_MAX: Final = 255
SPOOL_PREFIX: Final = "upload-"


@dataclass(frozen=True)
class UploadPart:
    """One message of the stream. `filename`, `content_type` and `size_bytes` count in the first only."""

    data: bytes
    filename: str = ""
    content_type: str = ""
    size_bytes: int | None = None


@dataclass(frozen=True)
class UploadResult:
    uri: str
    expire_time: datetime
    size_bytes: int
    sha256: str
    content_type: str
    key: str  # the provider key whose account holds the file


class SpoolBudget:
    """Bytes on disk that the uploads in flight may hold together. Never waits: a reservation that does not
    fit fails at once (the caller gets RESOURCE_EXHAUSTED; nobody else's upload is touched)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the spool limit must be at least 1 byte")
        self.limit = limit
        self.used = 0

    def reserve(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def release(self, n: int) -> None:
        self.used -= n


def _invalid(field: str, description: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(
        f"upload refused: {field}: {description}",
        [errors.FieldViolation(field, description)],
        reason="INVALID_UPLOAD",
    )


def check_filename(filename: str) -> str | None:
    """What is wrong with a caller's file name, or None. A name, not a path: Runway keeps it as the
    object's name, and it ends up in a form field and in logs."""
    if len(filename) > FILENAME_MAX:
        return f"at most {FILENAME_MAX} characters"
    if "/" in filename or "\\" in filename or filename in (".", ".."):
        return "a file name, without any directory (no '/' or '\\')"
    if not filename.isprintable():
        return "must not contain control characters"
    return None


# Bytes gathered from small messages before one write to the spool file (in a worker thread).
_WRITE_BATCH: Final = 1024 * 1024

# A spool file untouched this long belongs to no upload: a live one is written with every message, and its
# upload to Runway takes minutes at most.
STALE_SPOOL_AGE: Final = 3600.0


def _remove_stale_spools(directory: Path, max_age: float) -> int:
    cutoff = time.time() - max_age
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if not (entry.name.startswith(SPOOL_PREFIX) and entry.name.endswith(".part")):
            continue
        try:
            if entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue  # another replica removed it first
    if removed:
        log.info("uploads: removed %d spool file(s) left by uploads that were cut off", removed)
    return removed


def new_spool_file(directory: Path) -> tuple[int, str]:
    """A new spool file in `directory` (created if need be): its descriptor and path. Blocking: call it in a
    worker thread."""
    directory.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=directory, prefix=SPOOL_PREFIX, suffix=".part")


class _Spool:
    """The temporary file of one upload. Every blocking call is made in a worker thread by the caller."""

    def __init__(self, directory: Path) -> None:
        fd, name = new_spool_file(directory)
        self.path = Path(name)
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()

    def write(self, data: bytes | bytearray) -> None:
        self._hash.update(data)  # releases the GIL for large buffers, like the write
        self._file.write(data)

    def finish(self) -> str:
        self._file.close()
        return self._hash.hexdigest()

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


class Uploads:
    def __init__(
        self, provider: VideoProvider, spool_dir: Path | str, *, spool_limit: int, keys: UploadKeys
    ) -> None:
        self._provider = provider
        self._keys = keys  # where each upload's key is kept (a Generate naming its URI must use that key)
        self._dir = Path(spool_dir)
        self.budget = SpoolBudget(spool_limit)

    @property
    def spool_dir(self) -> Path:
        return self._dir

    @contextlib.contextmanager
    def spool_space(self, n: int) -> Iterator[Path]:
        """`n` bytes of the spool budget for a file another use case spools here (a Remix's archived source,
        on its way to Runway), held until the block ends; yields the directory. RESOURCE_EXHAUSTED at once
        when it does not fit. Name the file `new_spool_file` does, so a killed server's leftovers are found
        by `remove_stale`."""
        self._reserve(n, 0)
        try:
            yield self._dir
        finally:
            self.budget.release(n)

    async def remove_stale(self, max_age: float = STALE_SPOOL_AGE) -> int:
        """Remove spool files left by a process that died mid-upload (kill -9, a crash): every other way out
        of an upload removes its file, so nothing else would. Only files not written to for `max_age`:
        another replica sharing the data directory may be spooling now. Returns how many were removed."""
        return await asyncio.to_thread(_remove_stale_spools, self._dir, max_age)

    async def upload(
        self, parts: AsyncIterator[UploadPart], *, deadline: float | None = None
    ) -> UploadResult:
        first = await anext(parts, None)
        if first is None:
            raise _invalid("data", "the stream carried no message")
        declared = self._check_first(first)
        reserved = 0
        spool: _Spool | None = None
        try:
            if first.size_bytes is not None:
                reserved = self._reserve(first.size_bytes, 0)
            spool = await asyncio.to_thread(_Spool, self._dir)
            size, head, found = 0, b"", None
            # Small messages are gathered and written _WRITE_BATCH at a time: one thread hop per message
            # would let a client sending tiny messages fill the shared worker pool with hops.
            pending = bytearray()
            part: UploadPart | None = first
            while part is not None:
                data = part.data
                if data:
                    size += len(data)
                    self._check_running_size(size, first.size_bytes)
                    if size > reserved:
                        reserved += self._reserve(size - reserved, reserved)
                    if found is None:
                        head += data[: media_type.SNIFF_BYTES - len(head)]
                        if len(head) >= media_type.SNIFF_BYTES:
                            found = self._check_type(head, first, declared)
                    if not pending and len(data) >= _WRITE_BATCH:
                        await asyncio.to_thread(spool.write, data)
                    else:
                        pending += data
                        if len(pending) >= _WRITE_BATCH:
                            await asyncio.to_thread(spool.write, pending)
                            pending.clear()
                part = await anext(parts, None)
            if pending:
                await asyncio.to_thread(spool.write, pending)
            if size < MIN_UPLOAD_BYTES:
                raise _invalid("data", f"{size} bytes; an upload must be at least {MIN_UPLOAD_BYTES} bytes")
            if first.size_bytes is not None and size != first.size_bytes:
                raise _invalid("size_bytes", f"{first.size_bytes} announced, {size} received")
            if found is None:
                found = self._check_type(head, first, declared)
            sha256 = await asyncio.to_thread(spool.finish)
            filename = first.filename or f"upload.{found.extensions[0]}"
            asset = await self._provider.upload(
                spool.path, filename=filename, size=size, content_type=found.mime, deadline=deadline
            )
            await self._keys.remember(asset)  # before the URI is handed out: no Generate can beat it
            return UploadResult(asset.uri, asset.expire_time, size, sha256, found.mime, asset.key)
        finally:
            self.budget.release(reserved)
            if spool is not None:
                # Shielded: a cancelled call (the caller went away) still waits for its file to go; even if
                # cancelled again, the worker thread runs on and removes it.
                await asyncio.shield(asyncio.to_thread(spool.discard))

    # --- checks ---------------------------------------------------------------------------------------

    @staticmethod
    def _check_first(first: UploadPart) -> MediaType | None:
        """What the first message says, checked before any byte is spooled: the declared type (None:
        none declared), which the filename's extension must agree with."""
        problem = check_filename(first.filename)
        if problem is not None:
            raise _invalid("filename", problem)
        if first.size_bytes is not None and not MIN_UPLOAD_BYTES <= first.size_bytes <= MAX_UPLOAD_BYTES:
            raise _invalid(
                "size_bytes",
                f"{first.size_bytes}; an upload must be {MIN_UPLOAD_BYTES} bytes to {MAX_UPLOAD_BYTES} bytes",
            )
        declared = None
        if first.content_type:
            declared = media_type.from_content_type(first.content_type)
            if declared is None:
                shown = first.content_type[:100] if media_type.is_media_type(first.content_type) else "that"
                raise _invalid("content_type", f"{shown} is not supported ({media_type.SUPPORTED_NAMES})")
        ext = media_type.extension(first.filename)
        if ext:
            by_name = media_type.from_extension(first.filename)
            if by_name is None:
                raise _invalid(
                    "filename", f".{ext[:20]} is not a supported type ({media_type.SUPPORTED_NAMES})"
                )
            if declared is not None and declared != by_name:
                raise _invalid("content_type", f"{declared.mime} does not match the file name's .{ext}")
        return declared

    @staticmethod
    def _check_type(head: bytes, first: UploadPart, declared: MediaType | None) -> MediaType:
        found = media_type.sniff(head)
        if found is None:
            raise _invalid("data", f"not a supported type ({media_type.SUPPORTED_NAMES}), by its first bytes")
        if declared is not None and declared != found:
            raise _invalid("content_type", f"{first.content_type} declared, but the bytes are {found.mime}")
        by_name = media_type.from_extension(first.filename)
        if by_name is not None and by_name != found:
            ext = media_type.extension(first.filename)
            raise _invalid("filename", f"named .{ext}, but the bytes are {found.mime}")
        return found

    @staticmethod
    def _check_running_size(size: int, announced: int | None) -> None:
        if announced is not None and size > announced:
            raise _invalid("size_bytes", f"{announced} announced, more received")
        if size > MAX_UPLOAD_BYTES:
            raise _invalid("data", f"more than {MAX_UPLOAD_BYTES} bytes, the most an upload may have")

    def _reserve(self, n: int, held: int) -> int:
        if not self.budget.reserve(n):
            raise errors.ResourceExhausted(
                f"the server's upload spool is full ({held + n} bytes would pass the "
                f"{self.budget.limit} bytes of VIDEOGEN_UPLOAD_SPOOL_BYTES); retry later",
                reason="UPLOAD_SPOOL_FULL",
                retry_after=5.0,
                subject="VIDEOGEN_UPLOAD_SPOOL_BYTES",
            )
        return n
