"""RunwayProvider.upload (providers/runway/uploads.py) against the simulator over real HTTP: the two-step
ephemeral upload, what reaches the storage host (never our key), retries and refusals."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import tracemalloc
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from videogen_server import errors
from videogen_server.domain.clock import utcnow
from videogen_server.domain.video import DEFAULT_KEY_NAME
from videogen_server.providers.runway import RetryPolicy, RunwayProvider
from videogen_server.providers.runway.uploads import multipart_framing
from videogen_server.services.ports import UploadedAsset
from videogen_server.simulator import Fault, RunwaySimulator, SimulatorConfig

KEY = "key_" + "cd34" * 32
FAST = RetryPolicy(base_delay=0.001, max_delay=0.01)


@pytest.fixture
async def sim() -> AsyncIterator[RunwaySimulator]:
    simulator = RunwaySimulator(
        api_key=KEY, config=SimulatorConfig(pending_seconds=0.05, running_seconds=0.1)
    )
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def provider(sim: RunwaySimulator) -> AsyncIterator[RunwayProvider]:
    p = RunwayProvider.connect(sim.base_url, KEY, retry=FAST, timeout=30.0)
    try:
        yield p
    finally:
        await p.aclose()


def make_file(tmp_path: Path, size: int, name: str = "clip.mp4") -> tuple[Path, str]:
    path = tmp_path / name
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return path, digest.hexdigest()


async def upload(provider: RunwayProvider, path: Path, key: str | None = None) -> UploadedAsset:
    size = await asyncio.to_thread(os.path.getsize, path)
    return await provider.upload(path, filename=path.name, size=size, content_type="video/mp4", key=key)


async def test_upload_stores_the_bytes_without_our_key(
    provider: RunwayProvider, sim: RunwaySimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path, sha = make_file(tmp_path, 300_000)
    before = utcnow()
    asset = await provider.upload(
        path, filename="clip.mp4", size=300_000, content_type="video/mp4", deadline=time.monotonic() + 30
    )
    assert asset.uri.startswith("runway://") and asset.key == DEFAULT_KEY_NAME
    assert before + timedelta(hours=24) <= asset.expire_time <= utcnow() + timedelta(hours=24)
    stored = sim.uploads.resolve(asset.uri)
    assert stored is not None and stored.sha256 == sha and stored.size == 300_000
    # The storage refuses (and counts) an Authorization header and a body without Content-Length, and a
    # form whose fields come after the file: the upload succeeding proves none happened; the counts say so.
    assert sim.uploads.counts.to_json() == {
        "requests": 1,
        "withAuthorization": 0,
        "withoutContentLength": 0,
        "stored": 1,
    }
    assert sim.request_counts[("POST", "/v1/uploads")] == 1
    assert all(KEY not in r.getMessage() for r in caplog.records)


async def test_injected_client_defaults_never_reach_storage(sim: RunwaySimulator, tmp_path: Path) -> None:
    """Even a downloads client that carries our key as a default header sends no key to the storage."""
    leaky = httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}", "X-Runway-Version": "2024-11-06"})
    p = RunwayProvider.connect(sim.base_url, KEY, retry=FAST, http=leaky)  # serves /v1, downloads, uploads
    try:
        path, sha = make_file(tmp_path, 4096)
        asset = await upload(p, path)
    finally:
        await p.aclose()
        await leaky.aclose()
    assert sim.uploads.counts.with_authorization == 0
    assert sim.uploads.resolve(asset.uri).sha256 == sha  # type: ignore[union-attr]


def test_framing_puts_fields_before_the_file() -> None:
    head, tail = multipart_framing({"key": "k", "policy": "p"}, 'a"b\r\n.mp4', "video/mp4", "BOUND")
    text = head.decode()
    assert text.index('name="key"') < text.index('name="policy"') < text.index('name="file"')
    assert 'filename="a%22b%0D%0A.mp4"' in text  # a quote or CRLF can never end the header
    assert text.endswith("Content-Type: video/mp4\r\n\r\n") and tail == b"\r\n--BOUND--\r\n"


async def test_storage_5xx_retries_the_whole_upload(
    provider: RunwayProvider, sim: RunwaySimulator, tmp_path: Path
) -> None:
    sim.faults.add(Fault(route="storage", kind="status", status=503))
    path, sha = make_file(tmp_path, 2048)
    asset = await upload(provider, path)
    assert sim.request_counts[("POST", "/v1/uploads")] == 2  # a fresh form for the second try
    assert sim.request_counts[("POST", "storage")] == 2
    assert sim.uploads.resolve(asset.uri).sha256 == sha  # type: ignore[union-attr]


async def test_storage_reset_retries(provider: RunwayProvider, sim: RunwaySimulator, tmp_path: Path) -> None:
    sim.faults.add(Fault(route="storage", kind="reset"))
    path, _ = make_file(tmp_path, 2048)
    await upload(provider, path)
    assert sim.request_counts[("POST", "storage")] == 2


async def test_storage_down_is_unavailable(
    provider: RunwayProvider, sim: RunwaySimulator, tmp_path: Path
) -> None:
    sim.faults.add(Fault(route="storage", kind="status", status=500, count=10))
    path, _ = make_file(tmp_path, 2048)
    with pytest.raises(errors.UpstreamUnavailable) as info:
        await upload(provider, path)
    assert not isinstance(info.value, errors.UpstreamOutcomeUnknown)
    assert sim.request_counts[("POST", "storage")] == FAST.max_attempts
    assert KEY not in str(info.value)


async def test_storage_refusing_the_file_is_rejected(
    provider: RunwayProvider, sim: RunwaySimulator, tmp_path: Path
) -> None:
    path, _ = make_file(tmp_path, 100)  # below the storage's 512 B (the service refuses it before this)
    with pytest.raises(errors.UpstreamRejected, match="EntityTooSmall"):
        await upload(provider, path)
    assert sim.request_counts[("POST", "storage")] == 1  # not retried: it would fail the same way


async def test_no_credits_at_upload_start(
    provider: RunwayProvider, sim: RunwaySimulator, tmp_path: Path
) -> None:
    sim.config.credits = 0
    path, _ = make_file(tmp_path, 2048)
    with pytest.raises(errors.UpstreamCredits):
        await upload(provider, path)
    assert sim.request_counts[("POST", "storage")] == 0


async def test_upload_start_5xx_is_retried(
    provider: RunwayProvider, sim: RunwaySimulator, tmp_path: Path
) -> None:
    sim.faults.add(Fault(route="uploads", kind="status", status=502))
    path, _ = make_file(tmp_path, 2048)
    await upload(provider, path)
    assert sim.request_counts[("POST", "/v1/uploads")] == 2


async def test_other_key_is_not_configured(provider: RunwayProvider, tmp_path: Path) -> None:
    path, _ = make_file(tmp_path, 2048)
    with pytest.raises(errors.FailedPrecondition):
        await upload(provider, path, key="runway-key-2")


async def test_file_is_streamed_not_loaded(
    provider: RunwayProvider, sim: RunwaySimulator, tmp_path: Path
) -> None:
    """24 MB through the adapter (and the in-process simulator's storage) with a traced peak far below it:
    the file is read in chunks, never whole. tracemalloc, in this process: both sides are counted."""
    size = 24 * 1000 * 1000
    path, sha = make_file(tmp_path, size)
    tracemalloc.start()
    try:
        asset = await upload(provider, path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sim.uploads.resolve(asset.uri).sha256 == sha  # type: ignore[union-attr]
    assert peak < 8 * 1024 * 1024, peak
