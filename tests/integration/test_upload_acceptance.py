"""Issue 12 acceptance, Upload: a 20 MB MP4 uploaded to the real server (a child process, so its memory is
its own), used as video_uri of an aleph2 Generate that completes; the bytes Runway (the simulator, in this
process) received have the file's SHA-256; the server's resident memory (VmRSS from /proc/<pid>/status,
sampled through the upload) grows by less than 16 MiB."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from faults.server_process import start_process
from videogen_client import AsyncVideoClient, status_name
from videogen_server.simulator import RunwaySimulator, SimulatorConfig
from videogen_server.simulator.media import OutputMedia

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


async def test_20mb_mp4_upload_feeds_an_aleph2_generate(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    sha = await asyncio.to_thread(make_mp4, clip)
    sim = RunwaySimulator(
        api_key="key_test", config=SimulatorConfig(pending_seconds=0.1, running_seconds=0.3)
    )
    await sim.start()
    server = await start_process(tmp_path / "data", sim)
    try:
        async with AsyncVideoClient(server.address) as client:
            # Warm-up: the first upload pays for code paths and pools (not per-upload memory).
            warm = await client.upload(await asyncio.to_thread(_small_png, tmp_path))
            assert warm.content_type == "image/png"
            await asyncio.sleep(0.2)
            baseline = vm_rss(server.proc.pid)
            peak = baseline
            done = asyncio.Event()

            async def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, vm_rss(server.proc.pid))
                    await asyncio.sleep(0.01)

            sampler = asyncio.create_task(sample())
            try:
                up = await client.upload(clip, timeout=120)
            finally:
                done.set()
                await sampler
            peak = max(peak, vm_rss(server.proc.pid))
            assert up.size_bytes == SIZE and up.sha256 == sha and up.content_type == "video/mp4"
            growth = peak - baseline
            print(
                f"server VmRSS baseline {baseline / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB, "
                f"growth {growth / MIB:.1f} MiB"
            )
            assert growth < 16 * MIB, f"server memory grew {growth / MIB:.1f} MiB during a 20 MB upload"

            video = await client.generate("aleph2", "turn it to snow", video_uri=up.uri)
            done_video = await client.wait(video.id, timeout=60)
            assert status_name(done_video.status) == "COMPLETED"
            received = sim.task_inputs(video.upstream_task_id)["videoUri"]
            assert received["sha256"] == sha and received["size"] == SIZE
            assert sim.uploads.counts.with_authorization == 0
        assert not list((tmp_path / "data" / "uploads").iterdir())
    finally:
        await server.close()
        await sim.stop()


def _small_png(tmp_path: Path) -> Path:
    path = tmp_path / "warm.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(4000))
    return path
