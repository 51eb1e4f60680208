"""What ListModels says is what Generate enforces: for every current model and mode, each listed size and
duration is accepted by the provider's plan, the defaults are what it sends, and a size or duration it does
not list is refused. And the use case lists what its provider describes (on the shipped fake)."""

from __future__ import annotations

import pytest
from videogen_server import errors
from videogen_server.domain.generation import GenerateSpec, GenerationMode
from videogen_server.domain.model_info import (
    DurationsInfo,
    ModeInfo,
    ModelInfo,
    ModelStatus,
    PromptNeed,
)
from videogen_server.providers.memory import MemoryProvider
from videogen_server.providers.runway.describe import CURRENT_MODEL_IDS, MODELS
from videogen_server.providers.runway.mapping import build_upstream_request
from videogen_server.services.tracker import TaskTracker
from videogen_server.services.videos import Videos
from videogen_server.store.local_coordinator import LocalCoordinator
from videogen_server.store.memory import MemoryVideoStore

INPUTS = {
    GenerationMode.TEXT_TO_VIDEO: {},
    GenerationMode.IMAGE_TO_VIDEO: {"input_reference": "https://example.com/cat.png"},
    GenerationMode.VIDEO_TO_VIDEO: {"video_uri": "https://example.com/cat.mp4"},
}


def _spec(model: ModelInfo, mode: ModeInfo, **fields: object) -> GenerateSpec:
    prompt = "" if mode.prompt is PromptNeed.NOT_ACCEPTED else "a paper boat"
    return GenerateSpec(model=model.id, prompt=prompt, **INPUTS[mode.mode], **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "mode"),
    [(m, mode) for m in MODELS if m.status is ModelStatus.CURRENT for mode in m.modes],
    ids=lambda x: getattr(x, "id", None) or getattr(x, "mode", ""),
)
def test_the_description_is_what_plan_enforces(model: ModelInfo, mode: ModeInfo) -> None:
    plan = build_upstream_request(_spec(model, mode))
    assert plan.mode is mode.mode
    assert plan.size == mode.default_size
    assert plan.seconds == (model.durations.default_seconds if model.durations else None)
    for size in mode.sizes:
        assert build_upstream_request(_spec(model, mode, size=size)).size == size
    with pytest.raises(errors.InvalidArgument):
        build_upstream_request(_spec(model, mode, size="1234x567"))
    if model.durations is not None:
        for seconds in model.durations.allowed_seconds:
            assert build_upstream_request(_spec(model, mode, seconds=seconds)).seconds == seconds
        with pytest.raises(errors.InvalidArgument):
            build_upstream_request(_spec(model, mode, seconds=max(model.durations.allowed_seconds) + 1))


def test_legacy_models_are_refused_with_their_replacement() -> None:
    for model in MODELS:
        if model.status is ModelStatus.LEGACY:
            with pytest.raises(errors.InvalidArgument) as refused:
                build_upstream_request(_spec(model, model.modes[0]))
            assert model.replacement in refused.value.violations[0].description
            assert model.replacement in CURRENT_MODEL_IDS


async def test_the_use_case_lists_what_the_provider_describes() -> None:
    described = (
        ModelInfo(
            id="fake1",
            status=ModelStatus.CURRENT,
            modes=(ModeInfo(GenerationMode.TEXT_TO_VIDEO, ("1280x720",), "1280x720", PromptNeed.REQUIRED),),
            durations=DurationsInfo((5,), 5),
            audio=False,
            seed=True,
            content_moderation=False,
            prompt_max_length=None,
        ),
    )
    provider = MemoryProvider(models=described)
    store = MemoryVideoStore()
    coordinator = LocalCoordinator()
    await coordinator.open()
    tracker = TaskTracker(
        store,
        lambda record, deadline: provider.get_task(
            record.upstream_id, key=record.runway_key, deadline=deadline
        ),
        coordinator=coordinator,
        poll_interval=1.0,
    )
    try:
        assert Videos(store, provider, tracker).models() == described
        assert provider.calls["models"] == 1
    finally:
        await tracker.close()
        await coordinator.close()
