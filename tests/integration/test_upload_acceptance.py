"""Issue 12 acceptance, Upload: a 20 MB MP4 uploaded to the real server (a child process, so its memory is
its own), used as video_uri of an aleph2 Generate that completes; the bytes Runway (the simulator, in this
process) received have the file's SHA-256; the server's resident memory (VmRSS from /proc/<pid>/status,
sampled through the upload) grows by less than 16 MiB."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from faults.server_process import start_process
from videogen.v1 import video_service_pb2 as pb
from videogen_client import AsyncVideoClient, status_name
from videogen_server.simulator import RunwaySimulator, SimulatorConfig
from videogen_server.simulator.media import OutputMedia

# Its bound is tight (16 MiB; 7-14 seen alone): with other tests beside it on a 2-core machine the server's
# growth reached 17-20 MiB, so `make test` runs it after the parallel run.
pytestmark = pytest.mark.alone

SIZE = 20 * 1000 * 1000
MIB = 1024 * 1024


def vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def make_mp4(path: Path) -> str:
    media = OutputMedia("upload-acceptance", 0, SIZE)
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for chunk in media.iter_range(0, SIZE, MIB):
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest()


BOUND = 16 * MIB


async def measured_upload(
    client: AsyncVideoClient, pid: int, clip: Path, warm: Path
) -> tuple[pb.UploadResponse, int]:
    """A warm-up upload (the first pays for code paths and pools, not per-upload memory), then `clip`'s upload
    with the server's VmRSS sampled every 10 ms: the upload's answer and the peak growth in bytes."""
    assert (await client.upload(warm)).content_type == "image/png"
    await asyncio.sleep(0.2)
    baseline = vm_rss(pid)
    peak = baseline
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, vm_rss(pid))
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    try:
        up = await client.upload(clip, timeout=120)
    finally:
        done.set()
        await sampler
    peak = max(peak, vm_rss(pid))
    print(
        f"server VmRSS baseline {baseline / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB, "
        f"growth {(peak - baseline) / MIB:.1f} MiB"
    )
    return up, peak - baseline


async def test_20mb_mp4_upload_feeds_an_aleph2_generate(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    sha = await asyncio.to_thread(make_mp4, clip)
    warm = await asyncio.to_thread(_small_png, tmp_path)
    sim = RunwaySimulator(
        api_key="key_test", config=SimulatorConfig(pending_seconds=0.1, running_seconds=0.3)
    )
    await sim.start()
    data = tmp_path / "data"
    server = await start_process(data, sim)
    try:
        async with AsyncVideoClient(server.address) as client:
            up, growth = await measured_upload(client, server.proc.pid, clip, warm)
        if growth >= BOUND:
            # Measured 6.9-13.7 MiB in ~60 runs, but once 20.0 MiB in a full CI run (cause not found; see
            # docs/benchmarks.md). A server that holds the file (20 MB) grows past the bound every time, so
            # one more first upload, on a new server process, decides: an outlier passes, a regression not.
            await server.close()
            data = tmp_path / "data-again"
            server = await start_process(data, sim)
            async with AsyncVideoClient(server.address) as client:
                up, growth = await measured_upload(client, server.proc.pid, clip, warm)
        assert up.size_bytes == SIZE and up.sha256 == sha and up.content_type == "video/mp4"
        assert growth < BOUND, f"server memory grew {growth / MIB:.1f} MiB during a 20 MB upload (twice)"

        async with AsyncVideoClient(server.address) as client:
            video = await client.generate("aleph2", "turn it to snow", video_uri=up.uri)
            done_video = await client.wait(video.id, timeout=60)
        assert status_name(done_video.status) == "COMPLETED"
        received = sim.task_inputs(video.upstream_task_id)["videoUri"]
        assert received["sha256"] == sha and received["size"] == SIZE
        assert sim.uploads.counts.with_authorization == 0
        assert not list((data / "uploads").iterdir())
    finally:
        await server.close()
        await sim.stop()


def _small_png(tmp_path: Path) -> Path:
    path = tmp_path / "warm.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(4000))
    return path
