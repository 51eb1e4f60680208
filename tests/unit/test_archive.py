"""The OutputArchive contract (services/ports.py) on every engine: MemoryArchive, the obstore engine on a
real temporary directory (file://), and on moto's S3-protocol server on a loopback port (s3://).

What is checked is what the archiver and the relay rely on: streamed round trips, ranged reads, atomic puts
(a put whose chunks raise, or that is cancelled, leaves nothing, and a previous object as it was), bounded
memory, errors mapped to ArchiveObjectMissing / ArchiveUnavailable in one line without credentials, and a
dead S3 endpoint failing in bounded time.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from moto_s3 import SECRET_KEY, MotoS3, aws_env, moto_s3, require_moto
from videogen_server import errors
from videogen_server.archive import MemoryArchive, open_archive
from videogen_server.archive.object_store import ObjectStoreArchive, _cause
from videogen_server.services.ports import OutputArchive

KiB = 1024
MiB = 1024 * KiB
CHUNK = 256 * KiB
ENGINES = ["memory", "file", "s3"]


def pattern(size: int, seed: int = 0) -> bytes:
    """Bytes that differ at every offset within a few KiB (so a shifted range cannot compare equal)."""
    block = hashlib.sha256(f"seed{seed}".encode()).digest()
    blocks = bytearray()
    counter = 0
    while len(blocks) < size:
        blocks += hashlib.sha256(block + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(blocks[:size])


async def chunks_of(data: bytes, size: int = CHUNK) -> AsyncIterator[bytes]:
    for pos in range(0, len(data), size):
        await asyncio.sleep(0)
        yield data[pos : pos + size]


class Cut(Exception):
    """What a download cut mid-way raises from the chunks."""


async def cut_after(data: bytes, limit: int, exc: BaseException) -> AsyncIterator[bytes]:
    async for chunk in chunks_of(data[:limit]):
        yield chunk
    raise exc


async def read_all(archive: OutputArchive, key: str, *, start: int = 0, end: int | None = None) -> bytes:
    async with archive.open_read(key, start=start, end=end) as stream:
        return b"".join([chunk async for chunk in stream.iter_chunks(CHUNK)])


# -- engines -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_server() -> Iterator[MotoS3]:
    require_moto()
    with moto_s3() as server:
        yield server


def new_bucket(server: MotoS3) -> str:
    bucket = f"videogen-{uuid.uuid4().hex[:12]}"
    server.create_bucket(bucket)
    return bucket


async def make_archive(engine: str, tmp_path: Path, s3_server: MotoS3 | None, **tuning: int) -> OutputArchive:
    archive: OutputArchive
    if engine == "memory":
        archive = MemoryArchive()
        await archive.open()
    elif engine == "file":
        archive = ObjectStoreArchive(f"file://{tmp_path}/archive", **tuning)
        await archive.open()
    else:
        assert s3_server is not None
        bucket = new_bucket(s3_server)
        archive = ObjectStoreArchive(f"s3://{bucket}/outputs", **tuning)
        with aws_env(s3_server.env()):
            await archive.open()
        archive.bucket = bucket  # type: ignore[attr-defined]
    return archive


@pytest.fixture(params=ENGINES)
async def archive(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OutputArchive]:
    server = request.getfixturevalue("s3_server") if request.param == "s3" else None
    archive = await make_archive(request.param, tmp_path, server)
    archive.engine = request.param  # type: ignore[attr-defined]
    archive.server = server  # type: ignore[attr-defined]
    yield archive
    await archive.close()


def leftovers(archive: OutputArchive, tmp_path: Path) -> list[str]:
    """What a failed put may have left behind the key's back: temporary files (file://), incomplete
    multipart uploads (s3://)."""
    engine = getattr(archive, "engine", "")
    if engine == "file":
        return [
            str(Path(root, name))
            for root, _, names in os.walk(tmp_path / "archive")
            for name in names
            if "#" in name
        ]
    if engine == "s3":
        body = archive.server.multipart_uploads(archive.bucket).decode()  # type: ignore[attr-defined]
        return ["<Upload>"] if "<Upload>" in body else []
    return []


# -- round trips -------------------------------------------------------------------------------------------


async def test_a_20_mib_round_trip_streams_both_ways(archive: OutputArchive) -> None:
    data = pattern(20 * MiB, seed=1)
    key = "videos/v1/0.mp4"
    await archive.put(key, chunks_of(data), content_type="video/mp4")
    assert await archive.size(key) == len(data)
    async with archive.open_read(key) as stream:
        assert stream.total_size == len(data)
        assert stream.content_type == "video/mp4"
        digest = hashlib.sha256()
        sizes = []
        async for chunk in stream.iter_chunks(CHUNK):
            digest.update(chunk)
            sizes.append(len(chunk))
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert set(sizes) == {CHUNK}, "every chunk is chunk_size (the object is a whole number of them)"


async def test_ranged_reads(archive: OutputArchive) -> None:
    data = pattern(MiB + 123, seed=2)
    size = len(data)
    await archive.put("r.mp4", chunks_of(data, 100 * KiB), content_type="video/mp4")
    for start, end in [
        (0, None),
        (10, 20),
        (size - 5, None),
        (CHUNK - 1, CHUNK + 1),
        (100, size + 1000),
        (7, 7),
    ]:
        assert await read_all(archive, "r.mp4", start=start, end=end) == data[start:end], (start, end)
    async with archive.open_read("r.mp4", start=size - 1) as stream:
        assert stream.total_size == size  # the whole object's size, whatever the range
        assert [c async for c in stream.iter_chunks(CHUNK)] == [data[-1:]]
    # Chunks of an odd size: all but the last are exactly that size.
    async with archive.open_read("r.mp4", start=3) as stream:
        sizes = [len(c) async for c in stream.iter_chunks(70_001)]
    assert sizes[:-1] == [70_001] * (len(sizes) - 1) and sum(sizes) == size - 3
    for start in (size, size + 10):
        with pytest.raises(errors.OutOfRange):
            async with archive.open_read("r.mp4", start=start):
                pass


async def test_sized_reads_ask_for_each_chunk_s_size_just_before_reading_it(archive: OutputArchive) -> None:
    """iter_sized (StreamContent's reads, whose message sizes follow the reader): every chunk has the size
    next_size() said just before it (the last may be shorter; on s3 a chunk also ends where a fetched
    segment does), and the bytes are the range's, whatever the sizes."""
    data = pattern(9 * MiB + 5, seed=4)
    await archive.put("sized.mp4", chunks_of(data), content_type="video/mp4")
    plan = [64 * KiB, 256 * KiB, 512 * KiB, MiB, 64 * KiB, 3 * MiB + 1]
    asked: list[int] = []

    def next_size() -> int:
        asked.append(plan[min(len(asked), len(plan) - 1)])
        return asked[-1]

    async with archive.open_read("sized.mp4", start=7) as stream:
        chunks = [bytes(c) async for c in stream.iter_sized(next_size)]
    assert b"".join(chunks) == data[7:]
    assert len(asked) == len(chunks)
    segment = getattr(archive, "read_segment", None) if getattr(archive, "engine", "") == "s3" else None
    position = 7
    for got, want in zip(chunks[:-1], asked, strict=False):
        if segment is None:
            assert len(got) == want, (position, len(got), want)
        else:  # never more than asked, and shorter only at the end of a segment
            assert len(got) == want or (len(got) < want and (position + len(got) - 7) % segment == 0)
        position += len(got)
    with pytest.raises(ValueError):
        async with archive.open_read("sized.mp4") as stream:
            async for _ in stream.iter_sized(lambda: 0):
                pass


async def test_an_empty_object(archive: OutputArchive) -> None:
    await archive.put("empty", chunks_of(b""), content_type="video/mp4")
    assert await archive.size("empty") == 0
    assert await read_all(archive, "empty") == b""


async def test_missing_objects_and_idempotent_delete(archive: OutputArchive) -> None:
    assert await archive.size("videos/nope/0.mp4") is None
    with pytest.raises(errors.ArchiveObjectMissing):
        async with archive.open_read("videos/nope/0.mp4"):
            pass
    await archive.delete("videos/nope/0.mp4")
    await archive.put("d.mp4", chunks_of(b"x" * 1000), content_type="video/mp4")
    await archive.delete("d.mp4")
    await archive.delete("d.mp4")
    assert await archive.size("d.mp4") is None
    with pytest.raises(errors.ArchiveObjectMissing):
        async with archive.open_read("d.mp4"):
            pass


async def test_concurrent_puts_of_different_keys(archive: OutputArchive) -> None:
    blobs = {f"videos/c{i}/0.mp4": pattern((i + 1) * 700 * KiB, seed=10 + i) for i in range(8)}
    await asyncio.gather(*(archive.put(k, chunks_of(v), content_type="video/mp4") for k, v in blobs.items()))
    for key, data in blobs.items():
        assert await archive.size(key) == len(data)
        assert await read_all(archive, key) == data


# -- atomicity ---------------------------------------------------------------------------------------------


# Cut within the first part (a single PUT would follow) and after several parts (a multipart upload is
# under way): both must leave nothing.
@pytest.mark.parametrize("cut_at", [3 * MiB, 19 * MiB], ids=["small", "multipart"])
async def test_a_put_whose_chunks_raise_leaves_nothing(
    archive: OutputArchive, tmp_path: Path, cut_at: int
) -> None:
    data = pattern(24 * MiB, seed=3)
    before = pattern(300 * KiB, seed=4)
    await archive.put("kept.mp4", chunks_of(before), content_type="video/mp4")
    for key in ("new.mp4", "kept.mp4"):
        cut = Cut(f"download cut at {cut_at}")
        with pytest.raises(Cut) as info:
            await archive.put(key, cut_after(data, cut_at, cut), content_type="video/mp4")
        assert info.value is cut, "the chunks' own exception comes out as it is"
    assert await archive.size("new.mp4") is None
    assert await read_all(archive, "kept.mp4") == before
    assert leftovers(archive, tmp_path) == []


@pytest.mark.parametrize("sent_before", [1 * MiB, 12 * MiB], ids=["small", "multipart"])
async def test_a_cancelled_put_leaves_nothing(
    archive: OutputArchive, tmp_path: Path, sent_before: int
) -> None:
    before = pattern(200 * KiB, seed=5)
    await archive.put("kept.mp4", chunks_of(before), content_type="video/mp4")
    data = pattern(sent_before, seed=6)
    for key in ("new.mp4", "kept.mp4"):
        sent = asyncio.Event()
        stall = asyncio.Event()

        async def stalling(sent: asyncio.Event = sent, stall: asyncio.Event = stall) -> AsyncIterator[bytes]:
            async for chunk in chunks_of(data):
                yield chunk
            sent.set()
            await stall.wait()  # the download hangs: the put is cancelled while multipart parts are up
            yield b"never"

        put = asyncio.create_task(archive.put(key, stalling(), content_type="video/mp4"))
        await asyncio.wait_for(sent.wait(), 60)
        await asyncio.sleep(0.5)  # let the parts go up
        # Mid-put, readers see what was there before: nothing, or the previous object whole.
        assert await archive.size("new.mp4") is None
        assert await read_all(archive, "kept.mp4") == before
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(put, 60)
    assert await archive.size("new.mp4") is None
    assert await read_all(archive, "kept.mp4") == before
    assert leftovers(archive, tmp_path) == []


# -- memory ------------------------------------------------------------------------------------------------


MEMORY_TEST_TUNING: dict[str, int] = {}


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def peak_growth(work: asyncio.Future[object] | asyncio.Task[object]) -> int:
    base = peak = rss()
    while not work.done():
        peak = max(peak, rss())
        await asyncio.sleep(0.005)
    await work
    return max(peak, rss()) - base


@pytest.mark.alone  # this process's RSS, against a bound (40 MiB) not far above what it needs (~30)
@pytest.mark.parametrize("engine", ["file", "s3"])
async def test_put_and_read_memory_stays_bounded(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """64 MiB through the archive and back grows this process's RSS by far less than 64 MiB (loosely:
    under 40 MiB, where parts of 8 MiB, two in flight, and read segments of 4 MiB, one ahead, need about
    30). The S3 server is another process, so what is measured is the client alone."""
    server = request.getfixturevalue("s3_server") if engine == "s3" else None
    archive = await make_archive(engine, tmp_path, server, **MEMORY_TEST_TUNING)
    block = pattern(CHUNK, seed=7)
    total = 64 * MiB

    async def source() -> AsyncIterator[bytes]:
        for _ in range(total // CHUNK):
            await asyncio.sleep(0)
            # A fresh copy each time, as a download makes: obstore keeps references to the buffers it is
            # given, so a single object sent again and again would hide any buffering.
            yield bytes(bytearray(block))

    async def reader() -> int:
        count = 0
        async with archive.open_read("big.mp4") as stream:
            async for chunk in stream.iter_chunks(CHUNK):
                assert chunk == block
                count += len(chunk)
        return count

    try:
        put_growth = await peak_growth(
            asyncio.ensure_future(archive.put("big.mp4", source(), content_type="video/mp4"))
        )
        read = asyncio.ensure_future(reader())
        read_growth = await peak_growth(read)
        assert read.result() == total
    finally:
        await archive.close()
    print(f"{engine}: put grew RSS by {put_growth / MiB:.1f} MiB, read by {read_growth / MiB:.1f} MiB")
    assert put_growth < 40 * MiB, f"put grew RSS by {put_growth / MiB:.1f} MiB for a 64 MiB object"
    assert read_growth < 40 * MiB, f"read grew RSS by {read_growth / MiB:.1f} MiB for a 64 MiB object"


# -- open, errors, description ---------------------------------------------------------------------------


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text, repr(text)
    assert SECRET_KEY not in text
    return text


async def test_open_fails_on_a_bucket_that_does_not_exist(s3_server: MotoS3) -> None:
    archive = ObjectStoreArchive("s3://videogen-no-such-bucket/outputs")
    with aws_env(s3_server.env()), pytest.raises(errors.ArchiveUnavailable) as info:
        await archive.open()
    text = one_line(info.value)
    assert "s3://videogen-no-such-bucket/outputs" in text and "NoSuchBucket" in text, text


async def test_open_fails_on_a_directory_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a directory")
    archive = ObjectStoreArchive(f"file://{blocker}/archive")
    with pytest.raises(errors.ArchiveUnavailable) as info:
        await archive.open()
    text = one_line(info.value)
    assert f"file://{blocker}/archive" in text, text


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
async def test_open_fails_on_a_directory_that_cannot_be_written(tmp_path: Path) -> None:
    target = tmp_path / "ro"
    target.mkdir()
    target.chmod(0o500)
    try:
        with pytest.raises(errors.ArchiveUnavailable) as info:
            await ObjectStoreArchive(f"file://{target}").open()
        assert f"file://{target}" in one_line(info.value)
    finally:
        target.chmod(0o700)


async def test_open_creates_the_directory_and_leaves_no_probe(tmp_path: Path) -> None:
    archive = ObjectStoreArchive(f"file://{tmp_path}/deep/er/archive")
    await archive.open()
    try:
        assert (tmp_path / "deep/er/archive").is_dir()
        assert [n for _, _, names in os.walk(tmp_path) for n in names] == []
    finally:
        await archive.close()


async def test_a_stopped_s3_server_is_unavailable_in_bounded_time() -> None:
    """Every call fails with ArchiveUnavailable (one line) once the server is gone, within the client's
    timeouts (connect 1 s, one retry in at most 2 s), never hanging."""
    require_moto()
    server = MotoS3()
    server.start()
    try:
        archive = await make_archive(
            "s3", Path("."), server, connect_timeout=1, request_timeout=3, max_retries=1, retry_timeout=2
        )
        await archive.put("v.mp4", chunks_of(b"y" * 5000), content_type="video/mp4")
    finally:
        server.stop()
    calls = {
        "size": lambda: archive.size("v.mp4"),
        "delete": lambda: archive.delete("v.mp4"),
        "put": lambda: archive.put("w.mp4", chunks_of(b"z" * 5000), content_type="video/mp4"),
        "big put": lambda: archive.put("w.mp4", chunks_of(pattern(9 * MiB)), content_type="video/mp4"),
    }
    for name, call in calls.items():
        async with asyncio.timeout(30):
            with pytest.raises(errors.ArchiveUnavailable) as info:
                await call()
        assert "s3://" in one_line(info.value), name
    async with asyncio.timeout(30):
        with pytest.raises(errors.ArchiveUnavailable):
            async with archive.open_read("v.mp4"):
                pass
    await archive.close()


async def test_an_endpoint_that_never_answers_fails_open_within_the_request_timeout() -> None:
    """A black hole (a socket that accepts and never replies): the whole-request timeout ends it."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        env = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{hole.getsockname()[1]}",
            "AWS_ACCESS_KEY_ID": "AKIAVIDEOGENTEST0000",
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }
        archive = ObjectStoreArchive(
            "s3://videogen-hole/x", connect_timeout=1, request_timeout=1, max_retries=0, retry_timeout=1
        )
        loop = asyncio.get_running_loop()
        began = loop.time()
        with aws_env(env), pytest.raises(errors.ArchiveUnavailable) as info:
            async with asyncio.timeout(30):
                await archive.open()
        assert loop.time() - began < 30
    assert "s3://videogen-hole/x" in one_line(info.value)


async def test_an_s3_that_answers_503_is_unavailable(tmp_path: Path) -> None:
    """An S3 that refuses every request (503 SlowDown, as an overloaded or failing store answers): open
    fails in one line with S3's code, after a bounded number of retries."""
    requests = 0

    async def refuse(request: web.Request) -> web.Response:
        nonlocal requests
        requests += 1
        body = "<?xml version='1.0'?><Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"
        return web.Response(status=503, text=body, content_type="application/xml")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        env = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "AKIAVIDEOGENTEST0000",
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }
        archive = ObjectStoreArchive("s3://videogen-busy/x", max_retries=2, retry_timeout=5)
        with aws_env(env), pytest.raises(errors.ArchiveUnavailable) as info:
            async with asyncio.timeout(30):
                await archive.open()
    finally:
        await runner.cleanup()
    text = one_line(info.value)
    assert "s3://videogen-busy/x" in text and "SlowDown (HTTP 503" in text, text
    assert requests == 3, "the first try and two retries"


async def test_calls_after_close_raise(tmp_path: Path) -> None:
    for archive in (MemoryArchive(), ObjectStoreArchive(f"file://{tmp_path}/a")):
        await archive.open()
        await archive.close()
        with pytest.raises(RuntimeError):
            await archive.size("k")
        with pytest.raises(RuntimeError):
            await archive.close()


def test_descriptions_name_no_credentials(tmp_path: Path) -> None:
    assert "hunter2" not in _cause(OSError("Error performing GET http://user:hunter2@host:9000/b/k: refused"))
    assert ObjectStoreArchive("s3://bucket/a/b/").description == "s3://bucket/a/b"
    assert ObjectStoreArchive("s3://bucket").description == "s3://bucket"
    assert ObjectStoreArchive(f"file://{tmp_path}/x/").description == f"file://{tmp_path}/x"
    with pytest.raises(ValueError):
        ObjectStoreArchive(f"s3://key:{SECRET_KEY}@bucket/x")


def test_open_archive_picks_the_engine(tmp_path: Path) -> None:
    assert open_archive("off", str(tmp_path)) is None
    default = open_archive("", str(tmp_path / "data"))
    assert isinstance(default, ObjectStoreArchive)
    assert default.description == f"file://{tmp_path}/data/archive"
    s3 = open_archive("s3://bucket/prefix", str(tmp_path))
    assert isinstance(s3, ObjectStoreArchive) and s3.description == "s3://bucket/prefix"


# -- the memory engine's fault hooks -----------------------------------------------------------------------


async def test_memory_fault_hooks() -> None:
    archive = MemoryArchive()
    archive.fail_open = True
    with pytest.raises(errors.ArchiveUnavailable):
        await archive.open()
    archive.fail_open = False
    await archive.open()
    await archive.put("k", chunks_of(b"a" * 1000), content_type="video/mp4")
    archive.fail_puts = True
    with pytest.raises(errors.ArchiveUnavailable):
        await archive.put("k", chunks_of(b"b" * 1000), content_type="video/mp4")
    archive.fail_puts = False
    archive.fail_reads = True
    with pytest.raises(errors.ArchiveUnavailable):
        await archive.size("k")
    archive.fail_reads = False
    async with archive.open_read("k") as stream:
        chunks = stream.iter_chunks(100)
        assert await anext(chunks) == b"a" * 100
        archive.fail_reads = True  # cut mid-read
        with pytest.raises(errors.ArchiveUnavailable):
            await anext(chunks)
    archive.fail_reads = False
    assert await read_all(archive, "k") == b"a" * 1000
    await archive.close()


async def test_a_local_archive_removes_stale_partial_files_at_open(tmp_path: Path) -> None:
    # What a copy killed mid-way leaves (obstore's `<key>#<n>`), a live copy's partial file, and real objects.
    videos = tmp_path / "videos" / "a"
    videos.mkdir(parents=True)
    stale, live, kept = videos / "0.mp4#3", videos / "1.mp4#12", videos / "0.mp4"
    for path in (stale, live, kept):
        path.write_bytes(b"x" * 100)
    two_hours_ago = os.stat(kept).st_mtime - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    os.utime(kept, (two_hours_ago, two_hours_ago))  # an old object is an object, whatever its age

    archive = ObjectStoreArchive(f"file://{tmp_path}", partial_max_age=3600.0)
    await archive.open()
    try:
        async with asyncio.timeout(10):
            while stale.exists():  # noqa: ASYNC110 - the clean-up runs in the background
                await asyncio.sleep(0.02)
        assert live.exists()  # written to recently: another copy may still be writing it
        assert kept.read_bytes() == b"x" * 100
        assert await archive.size("videos/a/0.mp4") == 100
    finally:
        await archive.close()
