"""Deterministic MP4 bytes of any size, computed lazily per byte range, and HTTP Range parsing."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from functools import lru_cache
from typing import Final

BLOCK: Final = 64 * 1024
_UINT32_MAX: Final = 0xFFFFFFFF


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _ftyp() -> bytes:
    return _box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41")


def _moov(duration_ms: int) -> bytes:
    identity = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
    mvhd = (
        struct.pack(">I", 0)  # version 0, flags 0
        + struct.pack(">IIII", 0, 0, 1000, duration_ms)  # creation, modification, timescale, duration
        + struct.pack(">IH", 0x00010000, 0x0100)  # rate 1.0, volume 1.0
        + bytes(10)  # reserved
        + identity
        + bytes(24)  # pre_defined
        + struct.pack(">I", 2)  # next_track_ID
    )
    return _box(b"moov", _box(b"mvhd", mvhd))


_PREFIX: Final = _ftyp() + _moov(duration_ms=5000)


def _header(size: int) -> bytes:
    mdat_size = max(size - len(_PREFIX), 8)  # tiny sizes: the file is just a truncated header
    if mdat_size <= _UINT32_MAX:
        return _PREFIX + struct.pack(">I", mdat_size) + b"mdat"
    return _PREFIX + struct.pack(">I", 1) + b"mdat" + struct.pack(">Q", mdat_size)


@lru_cache(maxsize=64)
def _base_block(seed: bytes) -> bytes:
    return hashlib.shake_256(seed).digest(BLOCK)


class OutputMedia:
    """The MP4 served for one (task id, output index): ``size`` bytes, any range computed on demand.

    Layout: ``ftyp`` (isom), ``moov`` (with ``mvhd``), then ``mdat`` (32-bit size, or 64-bit when needed)
    filling the rest with pseudo-random bytes. Each 64 KiB payload block is a rotation of one
    seed-derived block, the rotation depending on the block index, so any range is cheap to produce.
    """

    def __init__(self, task_id: str, index: int, size: int) -> None:
        self.size = size
        self._seed = f"{task_id}:{index}".encode()
        self._header = _header(size)

    def _block(self, k: int) -> bytes:
        base = _base_block(self._seed)
        r = (k * 40503 + 7919) % BLOCK
        return base[r:] + base[:r]

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` (clamped to the file)."""
        end = min(end, self.size)
        if start >= end:
            return b""
        parts: list[bytes] = []
        hlen = len(self._header)
        if start < hlen:
            parts.append(self._header[start : min(end, hlen)])
            start = min(end, hlen)
        pos = start - hlen
        stop = end - hlen
        while pos < stop:
            k, off = divmod(pos, BLOCK)
            take = min(BLOCK - off, stop - pos)
            parts.append(self._block(k)[off : off + take])
            pos += take
        return b"".join(parts)

    def iter_range(self, start: int, end: int, chunk: int = 256 * 1024) -> Iterator[bytes]:
        """Bytes ``[start, end)`` in chunks of at most ``chunk`` bytes."""
        pos = start
        while pos < end:
            nxt = min(pos + chunk, end)
            yield self.read(pos, nxt)
            pos = nxt


class RangeNotSatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Parse a single ``Range: bytes=...`` header into ``[start, end)``.

    ``None`` means serve the whole entity (no header, a syntactically invalid one, or several ranges, which
    RFC 9110 lets a server ignore). Raises ``RangeNotSatisfiable`` for a valid but unsatisfiable range.
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if not (first.isdigit() or first == "") or not (last.isdigit() or last == "") or (first == last == ""):
        return None
    if first == "":  # suffix range: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - n), size
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable
    end = size if last == "" else min(int(last) + 1, size)
    return start, end
