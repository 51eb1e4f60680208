"""The official runwayml SDK is the oracle: it must drive the simulator and parse every answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import runwayml
from runwayml import AsyncRunwayML, RunwayML
from videogen_server.simulator import RunwaySimulator

IMAGE = "https://example.com/cat.png"


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    # wait_for_task_output sleeps POLL_TIME +/- POLL_JITTER/2 (6 s +/- 1.5 s) before each GET.
    monkeypatch.setattr("runwayml.lib.polling.POLL_TIME", 0.05)
    monkeypatch.setattr("runwayml.lib.polling.POLL_JITTER", 0.0)


@pytest.fixture
async def client(sim: RunwaySimulator) -> AsyncIterator[AsyncRunwayML]:
    async with AsyncRunwayML(api_key=sim.api_key, base_url=sim.base_url, max_retries=0) as c:
        yield c


async def test_creates_for_each_current_model(client: AsyncRunwayML, sim: RunwaySimulator) -> None:
    sim.config.pending_seconds = 5.0  # stay queued while we look
    created = [
        await client.text_to_video.create(model="gen4.5", prompt_text="a fox", ratio="1280:720", duration=5),
        await client.text_to_video.create(model="veo3.1", prompt_text="a fox", ratio="1920:1080", duration=8),
        await client.image_to_video.create(
            model="gen4_turbo", prompt_image=IMAGE, ratio="960:960", duration=5, prompt_text="cat"
        ),
        await client.video_to_video.create(
            model="aleph2",
            video_uri="https://example.com/in.mp4",
            prompt_text="snow",
            target_aspect_ratio="16:9",
        ),
    ]
    for c in created:
        task = await client.tasks.retrieve(c.id)
        assert task.id == c.id
        assert task.status in ("PENDING", "THROTTLED")
        assert task.estimated_cost.credits > 0  # type: ignore[union-attr]
        assert sim.task_status(c.id) == task.status


async def test_wait_for_output_succeeds(client: AsyncRunwayML, sim: RunwaySimulator) -> None:
    created = await client.text_to_video.create(model="gen4.5", prompt_text="x", ratio="720:1280", duration=2)
    task = await created.wait_for_task_output(timeout=10)
    assert task.status == "SUCCEEDED"
    assert len(task.output) == 1  # type: ignore[union-attr]
    assert task.output[0].startswith(sim.base_url + "/_sim/outputs/")  # type: ignore[union-attr]
    assert task.cost.credits == 24  # type: ignore[union-attr]


async def test_forced_failure_raises_task_failed(client: AsyncRunwayML) -> None:
    created = await client.text_to_video.create(
        model="veo3.1_fast", prompt_text="x [sim:fail=SAFETY.INPUT.TEXT]", ratio="1280:720"
    )
    with pytest.raises(runwayml.TaskFailedError) as info:
        await created.wait_for_task_output(timeout=10)
    details = info.value.task_details
    assert details.status == "FAILED"
    assert details.failure_code == "SAFETY.INPUT.TEXT"  # type: ignore[union-attr]
    assert details.failure  # type: ignore[union-attr]


async def test_delete_then_retrieve_is_not_found(client: AsyncRunwayML, sim: RunwaySimulator) -> None:
    created = await client.text_to_video.create(model="gen4.5", prompt_text="x", ratio="1280:720", duration=5)
    await client.tasks.delete(created.id)
    assert sim.task_status(created.id) is None
    with pytest.raises(runwayml.NotFoundError) as info:
        await client.tasks.retrieve(created.id)
    assert info.value.body == {"error": "Could not find Task"}
    with pytest.raises(runwayml.NotFoundError):
        await client.tasks.delete(created.id)


async def test_bad_key_is_authentication_error(sim: RunwaySimulator) -> None:
    async with AsyncRunwayML(api_key="key_wrong", base_url=sim.base_url, max_retries=0) as bad:
        with pytest.raises(runwayml.AuthenticationError):
            await bad.organization.retrieve()


async def test_invalid_request_is_bad_request_with_issues(client: AsyncRunwayML) -> None:
    with pytest.raises(runwayml.BadRequestError) as info:
        await client.text_to_video.create(  # type: ignore[call-overload]
            model="gen4.5", prompt_text="x", ratio="960:960", duration=11
        )
    body = info.value.body
    assert isinstance(body, dict)
    assert body["error"] == "Validation of body failed"
    paths = {tuple(i["path"]) for i in body["issues"]}
    assert paths == {("ratio",), ("duration",)}
    with pytest.raises(runwayml.BadRequestError) as info:
        await client.image_to_video.create(  # type: ignore[call-overload]
            model="gen3a_turbo", prompt_image=IMAGE, prompt_text="x"
        )
    assert info.value.body["issues"][0]["note"] == "No matching discriminator"  # type: ignore[index]


async def test_organization_parses(client: AsyncRunwayML) -> None:
    org = await client.organization.retrieve()
    assert org.credit_balance > 0
    assert org.tier.models["gen4.5"].max_concurrent_generations == 2
    assert "veo3.1" in org.usage.models


async def test_sync_client(sim: RunwaySimulator) -> None:
    def run() -> tuple[str, str]:
        with RunwayML(api_key=sim.api_key, base_url=sim.base_url, max_retries=0) as c:
            created = c.image_to_video.create(
                model="veo3.1",
                prompt_image=[{"uri": IMAGE, "position": "first"}, {"uri": IMAGE, "position": "last"}],
                ratio="720:1280",
                duration=4,
                audio=False,
            )
            task = created.wait_for_task_output(timeout=10)
            return task.status, task.output[0]  # type: ignore[union-attr]

    status, url = await asyncio.to_thread(run)
    assert status == "SUCCEEDED"
    assert "_jwt=" in url
