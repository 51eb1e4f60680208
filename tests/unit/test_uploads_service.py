"""The Upload use case (services/uploads.py) on the in-memory provider, and the media-type sniffer
(domain/media_type.py): what is refused before any provider call, the spool's bounds and its cleanup."""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from videogen_server import errors
from videogen_server.domain import media_type
from videogen_server.providers.memory import MemoryProvider
from videogen_server.services import uploads as uploads_module
from videogen_server.services.upload_keys import UploadKeys
from videogen_server.services.uploads import MAX_UPLOAD_BYTES, UploadPart, Uploads
from videogen_server.simulator.media import OutputMedia
from videogen_server.store import MemoryVideoStore

PNG = b"\x89PNG\r\n\x1a\n" + bytes(2000)
JPEG = b"\xff\xd8\xff\xe0" + bytes(2000)
WEBP = b"RIFF" + struct.pack("<I", 2000) + b"WEBPVP8 " + bytes(2000)
WEBM = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm" + bytes(2000)
MKV = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska" + bytes(2000)
MOV = struct.pack(">I", 20) + b"ftypqt  " + b"\x00\x00\x02\x00qt  " + bytes(2000)
MP4 = OutputMedia("t", 0, 4000).read(0, 4000)  # the simulator's MP4: ftyp isom


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PNG, media_type.PNG),
        (JPEG, media_type.JPEG),
        (WEBP, media_type.WEBP),
        (WEBM, media_type.WEBM),
        (MOV, media_type.MOV),
        (MP4, media_type.MP4),
        (struct.pack(">I", 24) + b"ftypXXXX" + bytes(4) + b"mp42qt  " + bytes(100), media_type.MP4),
        (MKV, None),
        (b"GIF89a" + bytes(100), None),
        (b"RIFF\x00\x00\x00\x00WAVE" + bytes(100), None),
        (bytes(100), None),
        (b"", None),
    ],
)
def test_sniff(data: bytes, expected: media_type.MediaType | None) -> None:
    assert media_type.sniff(data[: media_type.SNIFF_BYTES]) == expected


def test_names_and_declared_types() -> None:
    assert media_type.from_extension("Clip.MP4") == media_type.MP4
    assert media_type.from_extension("a.jpeg") == media_type.JPEG
    assert media_type.extension(".hidden") == "" and media_type.extension("noext") == ""
    assert media_type.from_content_type("Image/PNG; charset=binary") == media_type.PNG
    assert media_type.from_content_type("image/gif") is None


async def parts(data: bytes, *, chunk: int = 1000, **first: object) -> AsyncIterator[UploadPart]:
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]
    yield UploadPart(data=pieces[0], **first)  # type: ignore[arg-type]
    for piece in pieces[1:]:
        yield UploadPart(data=piece)


def spooled(directory: Path) -> list[Path]:
    return list(directory.iterdir()) if directory.exists() else []


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
async def store() -> AsyncIterator[MemoryVideoStore]:
    async with MemoryVideoStore() as s:
        yield s


@pytest.fixture
def uploads(provider: MemoryProvider, store: MemoryVideoStore, tmp_path: Path) -> Uploads:
    return Uploads(provider, tmp_path / "spool", spool_limit=10 * MAX_UPLOAD_BYTES, keys=UploadKeys(store))


async def test_upload_returns_uri_size_and_hash(uploads: Uploads, provider: MemoryProvider) -> None:
    result = await uploads.upload(
        parts(MP4, filename="clip.mp4", content_type="video/mp4", size_bytes=len(MP4))
    )
    assert result.sha256 == hashlib.sha256(MP4).hexdigest() and result.size_bytes == len(MP4)
    assert result.content_type == "video/mp4" and provider.uploads[result.uri] == MP4
    assert spooled(uploads.spool_dir) == [] and uploads.budget.used == 0


async def test_small_messages_are_written_in_batches_not_one_thread_hop_each(
    uploads: Uploads, provider: MemoryProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []
    original = uploads_module._Spool.write

    def counted(self: object, data: bytes | bytearray) -> None:
        writes.append(len(data))
        original(self, data)  # type: ignore[arg-type]

    monkeypatch.setattr(uploads_module._Spool, "write", counted)
    data = OutputMedia("batches", 0, 2_500_000).read(0, 2_500_000)
    result = await uploads.upload(parts(data, chunk=1000, filename="clip.mp4"))  # 2,500 messages
    assert provider.uploads[result.uri] == data and result.sha256 == hashlib.sha256(data).hexdigest()
    assert sum(writes) == len(data) and len(writes) == 3  # 1 MiB, 1 MiB, the rest


async def test_type_from_bytes_when_nothing_is_declared(uploads: Uploads, provider: MemoryProvider) -> None:
    result = await uploads.upload(parts(WEBP))
    assert result.content_type == "image/webp" and result.uri.endswith("/upload.webp")


@pytest.mark.parametrize(
    ("data", "first", "field"),
    [
        (PNG, {"filename": "clip.mp4"}, "filename"),  # a PNG named .mp4
        (PNG, {"content_type": "video/mp4"}, "content_type"),
        (PNG, {"filename": "a.png", "content_type": "image/jpeg"}, "content_type"),
        (PNG, {"filename": "a.gif"}, "filename"),
        (PNG, {"content_type": "image/gif"}, "content_type"),
        (PNG, {"filename": "../etc/a.png"}, "filename"),
        (PNG, {"filename": "a\\b.png"}, "filename"),
        (PNG, {"filename": "x" * 252 + ".png"}, "filename"),
        (PNG, {"filename": "a\n.png"}, "filename"),
        (bytes(100), {}, "data"),  # 100 bytes
        (b"GIF89a" + bytes(1000), {}, "data"),
        (MKV, {}, "data"),
        (PNG, {"size_bytes": 100}, "size_bytes"),
        (PNG, {"size_bytes": MAX_UPLOAD_BYTES + 1}, "size_bytes"),
        (PNG, {"size_bytes": len(PNG) + 1}, "size_bytes"),
        (PNG, {"size_bytes": len(PNG) - 1}, "size_bytes"),
    ],
)
async def test_refused_before_any_provider_call(
    uploads: Uploads, provider: MemoryProvider, data: bytes, first: dict[str, object], field: str
) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        await uploads.upload(parts(data, **first))
    assert [v.field for v in info.value.violations] == [field]
    assert provider.calls["upload"] == 0
    assert spooled(uploads.spool_dir) == [] and uploads.budget.used == 0


async def test_empty_stream(uploads: Uploads) -> None:
    async def nothing() -> AsyncIterator[UploadPart]:
        return
        yield  # pragma: no cover

    with pytest.raises(errors.InvalidArgument):
        await uploads.upload(nothing())


async def test_wrong_type_refused_after_its_first_bytes(uploads: Uploads) -> None:
    """A wrong type is refused as soon as its first bytes are in, not after the whole stream."""
    consumed = 0

    async def stream() -> AsyncIterator[UploadPart]:
        nonlocal consumed
        async for part in parts(PNG * 50, filename="clip.mp4"):
            consumed += 1
            yield part

    with pytest.raises(errors.InvalidArgument):
        await uploads.upload(stream())
    assert consumed == 1


class Held:
    """A stream that sends `head` and then waits until released (a slow or vanished caller)."""

    def __init__(self, head: bytes, **first: object) -> None:
        self.head, self.first = head, first
        self.sent = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self) -> AsyncIterator[UploadPart]:
        yield UploadPart(data=self.head, **self.first)  # type: ignore[arg-type]
        self.sent.set()
        await self.release.wait()


async def wait_for_file(directory: Path) -> None:
    async with asyncio.timeout(10):
        while not spooled(directory):  # noqa: ASYNC110 - the file appears from a worker thread
            await asyncio.sleep(0.01)


async def test_cancelled_upload_leaves_no_file(uploads: Uploads, provider: MemoryProvider) -> None:
    held = Held(MP4)
    call = asyncio.create_task(uploads.upload(held()))
    await held.sent.wait()
    await wait_for_file(uploads.spool_dir)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert spooled(uploads.spool_dir) == [] and uploads.budget.used == 0
    assert provider.calls["upload"] == 0


async def test_provider_error_leaves_no_file(uploads: Uploads, provider: MemoryProvider) -> None:
    provider.fail_next("upload", errors.UpstreamUnavailable("storage down"))
    with pytest.raises(errors.UpstreamUnavailable):
        await uploads.upload(parts(PNG))
    assert spooled(uploads.spool_dir) == [] and uploads.budget.used == 0


async def test_spool_bound_refuses_only_the_upload_that_passes_it(
    provider: MemoryProvider, store: MemoryVideoStore, tmp_path: Path
) -> None:
    uploads = Uploads(provider, tmp_path / "spool", spool_limit=6000, keys=UploadKeys(store))
    held = Held(MP4[:4000], size_bytes=4000)  # holds 4000 bytes of the spool while it waits
    first = asyncio.create_task(uploads.upload(held()))
    await held.sent.wait()
    await wait_for_file(uploads.spool_dir)
    with pytest.raises(errors.ResourceExhausted) as info:  # announced: refused before a byte is spooled
        await uploads.upload(parts(PNG, size_bytes=len(PNG)))
    assert info.value.subject == "VIDEOGEN_UPLOAD_SPOOL_BYTES"
    with pytest.raises(errors.ResourceExhausted):  # not announced: refused when its bytes pass the bound
        await uploads.upload(parts(PNG + bytes(1000)))
    held.release.set()
    result = await first  # the first upload was not touched
    assert result.size_bytes == 4000 and uploads.budget.used == 0
    assert (await uploads.upload(parts(PNG))).size_bytes == len(PNG)  # room again


def test_spool_bound_from_the_environment() -> None:
    from videogen_server.config import Config, ConfigError

    assert Config.from_env({}).upload_spool_bytes == 1_000_000_000
    assert Config.from_env({"VIDEOGEN_UPLOAD_SPOOL_BYTES": "5000"}).upload_spool_bytes == 5000
    with pytest.raises(ConfigError, match="VIDEOGEN_UPLOAD_SPOOL_BYTES"):
        Config.from_env({"VIDEOGEN_UPLOAD_SPOOL_BYTES": "0"})


async def test_stale_spool_files_of_a_killed_process_are_removed(uploads: Uploads) -> None:
    # What kill -9 mid-upload leaves, a live upload's file, and a file that is not a spool file.
    spool = uploads.spool_dir
    spool.mkdir(parents=True)
    stale, live, other = spool / "upload-a.part", spool / "upload-b.part", spool / "notes.txt"
    for path in (stale, live, other):
        path.write_bytes(b"x" * 600)
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    assert await uploads.remove_stale() == 1
    assert not stale.exists() and live.exists() and other.exists()
    assert (
        await Uploads(
            MemoryProvider(), spool / "missing", spool_limit=1, keys=UploadKeys(MemoryVideoStore())
        ).remove_stale()
        == 0
    )  # no directory yet: nothing to do
