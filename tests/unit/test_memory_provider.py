"""The in-memory VideoProvider (providers/memory.py) keeps the port's promises (services/ports.py), so that
service-layer tests can stand on it: plans, tasks that move only when told, injected failures, ranged
output reads. No sockets: connecting anywhere fails these tests."""

from __future__ import annotations

import socket
import uuid

import pytest
from videogen_server import errors
from videogen_server.domain.generation import GenerateSpec, GenerationMode
from videogen_server.domain.task import UpstreamRequest
from videogen_server.domain.video import VideoStatus
from videogen_server.providers.memory import MemoryProvider
from videogen_server.services.ports import VideoProvider

SPEC = GenerateSpec(model="any-model", prompt="a boat")


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the memory provider opened a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider(credits=12.0)


def test_it_is_a_video_provider(provider: MemoryProvider) -> None:
    port: VideoProvider = provider  # checked by mypy where tests are typed; here, the methods exist
    for name in ("plan", "create", "get_task", "cancel_task", "open_output"):
        assert callable(getattr(port, name))


def test_plan_decides_what_the_record_needs(provider: MemoryProvider) -> None:
    plan = provider.plan(SPEC)
    assert (plan.mode, plan.seconds, plan.size) == (GenerationMode.TEXT_TO_VIDEO, 5, "1280x720")
    plan = provider.plan(
        GenerateSpec(model="m", input_reference="https://x.test/a.png", seconds=8, size="960x960")
    )
    assert (plan.mode, plan.seconds, plan.size) == (GenerationMode.IMAGE_TO_VIDEO, 8, "960x960")
    assert (
        provider.plan(GenerateSpec(model="m", video_uri="https://x.test/a.mp4")).mode
        is GenerationMode.VIDEO_TO_VIDEO
    )


def test_plan_refuses_with_every_violation(provider: MemoryProvider) -> None:
    spec = GenerateSpec(
        model=" ", input_reference="https://x.test/a.png", video_uri="https://x.test/a.mp4", seconds=0
    )
    with pytest.raises(errors.InvalidArgument) as info:
        provider.plan(spec)
    assert {v.field for v in info.value.violations} == {"model", "video_uri", "seconds"}


async def test_a_task_moves_only_when_told(provider: MemoryProvider) -> None:
    ref = await provider.create(provider.plan(SPEC))
    assert uuid.UUID(ref.id) and ref.estimated_credits == 12.0 and ref.status == "QUEUED"
    for _ in range(2):
        task = await provider.get_task(ref.id)
        assert (task.video_status, task.status, task.progress) == (VideoStatus.QUEUED, "QUEUED", None)
    provider.start(ref.id, progress=0.4)
    task = await provider.get_task(ref.id)
    assert (task.video_status, task.progress) == (VideoStatus.IN_PROGRESS, 0.4)
    provider.succeed(ref.id, b"0123456789")
    task = await provider.get_task(ref.id)
    assert task.video_status is VideoStatus.COMPLETED and len(task.outputs) == 1
    assert task.cost_credits == 12.0 and provider.plans[ref.id].spec == SPEC


async def test_failures_carry_the_providers_verdict(provider: MemoryProvider) -> None:
    ref = await provider.create(provider.plan(SPEC))
    provider.fail(ref.id, "SAFETY.INPUT.TEXT", "refused", retryable=False)
    task = await provider.get_task(ref.id)
    assert (task.video_status, task.failure_code, task.failure) == (
        VideoStatus.FAILED,
        "SAFETY.INPUT.TEXT",
        "refused",
    )
    assert task.failure_retryable is False


async def test_outputs_are_read_by_range(provider: MemoryProvider) -> None:
    ref = await provider.create(provider.plan(SPEC))
    provider.succeed(ref.id, b"0123456789")
    (url,) = (await provider.get_task(ref.id)).outputs
    async with provider.open_output(url) as out:
        assert (out.total_size, out.content_type) == (10, "video/mp4")
        assert b"".join([c async for c in out.iter_chunks(4)]) == b"0123456789"
    async with provider.open_output(url, start=2, end=5) as out:
        assert out.total_size == 10 and b"".join([c async for c in out.iter_chunks(64)]) == b"234"
    with pytest.raises(errors.OutOfRange):
        async with provider.open_output(url, start=10):
            pass
    with pytest.raises(errors.OutputExpired):
        async with provider.open_output(url + "x"):
            pass


async def test_cancel_ends_the_task_and_a_second_cancel_finds_it_gone(provider: MemoryProvider) -> None:
    ref = await provider.create(provider.plan(SPEC))
    assert await provider.cancel_task(ref.id) is True
    with pytest.raises(errors.UpstreamNotFound):  # as on Runway: GET after DELETE is a 404
        await provider.get_task(ref.id)
    assert await provider.cancel_task(ref.id) is False


async def test_a_task_can_vanish(provider: MemoryProvider) -> None:
    ref = await provider.create(provider.plan(SPEC))
    provider.vanish(ref.id)
    with pytest.raises(errors.UpstreamNotFound):
        await provider.get_task(ref.id)


async def test_injected_failures_are_raised_once_each_in_order(provider: MemoryProvider) -> None:
    provider.fail_next("create", errors.UpstreamOutcomeUnknown("no answer (test)"))
    provider.fail_next("create", errors.UpstreamUnavailable("down (test)"))
    plan = provider.plan(SPEC)
    with pytest.raises(errors.UpstreamOutcomeUnknown):
        await provider.create(plan)
    with pytest.raises(errors.UpstreamUnavailable):
        await provider.create(plan)
    ref = await provider.create(plan)
    provider.fail_next("get_task", errors.DeadlineExceeded("slow (test)"))
    with pytest.raises(errors.DeadlineExceeded):
        await provider.get_task(ref.id)
    assert (await provider.get_task(ref.id)).id == ref.id
    assert provider.calls["create"] == 3 and provider.calls["get_task"] == 2
    assert len(provider.tasks) == 1  # failed creates started nothing


async def test_create_takes_only_its_own_plans(provider: MemoryProvider) -> None:
    with pytest.raises(TypeError):
        await provider.create(UpstreamRequest(mode=GenerationMode.TEXT_TO_VIDEO, seconds=5, size=""))
