"""ListModels through the real server: its content is the catalog's (every model, mode, size, duration,
default and option, compared with catalog.py's table itself, not with the code that describes it), it
needs a caller key like every VideoService call, and a model id the catalog does not know is still sent to
Runway, whose refusal then names the models Runway accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import grpc
import pytest
from conftest import RunningServer, start_server, stop_server
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from videogen.v1 import video_pb2, video_service_pb2
from videogen_server.providers.runway.catalog import CATALOG, Need, RefSpec

_MODE = {
    "TEXT_TO_VIDEO": video_pb2.GENERATION_MODE_TEXT_TO_VIDEO,
    "IMAGE_TO_VIDEO": video_pb2.GENERATION_MODE_IMAGE_TO_VIDEO,
    "VIDEO_TO_VIDEO": video_pb2.GENERATION_MODE_VIDEO_TO_VIDEO,
}
_PROMPT = {
    Need.REQUIRED: video_service_pb2.PROMPT_REQUIREMENT_REQUIRED,
    Need.OPTIONAL: video_service_pb2.PROMPT_REQUIREMENT_OPTIONAL,
    Need.NONE: video_service_pb2.PROMPT_REQUIREMENT_NOT_ACCEPTED,
}
_OPTION = {
    "text": video_service_pb2.PROVIDER_OPTION_TYPE_TEXT,
    "enum": video_service_pb2.PROVIDER_OPTION_TYPE_ENUM,
    "number": video_service_pb2.PROVIDER_OPTION_TYPE_NUMBER,
    "any": video_service_pb2.PROVIDER_OPTION_TYPE_JSON,
}
CURRENT = [name for name, spec in CATALOG.items() if spec.legacy is None]


RefField = Literal["reference_images", "references"]


def _refs(message: video_service_pb2.ModelMode, field: RefField, ref: RefSpec | None) -> None:
    if ref is None:
        assert not message.HasField(field), field
        return
    assert message.HasField(field), field
    refs = getattr(message, field)
    if ref.max_items is None:
        assert not refs.HasField("max_count")
    else:
        assert refs.max_count == ref.max_items


async def test_list_models_is_the_catalog(videogen_server: RunningServer) -> None:
    response = await videogen_server.stub.ListModels(video_service_pb2.ListModelsRequest())
    listed = {m.id: m for m in response.models}
    assert len(listed) == len(response.models), "a model is listed twice"
    assert sorted(listed) == sorted(CATALOG)
    statuses = [m.status for m in response.models]
    assert statuses == sorted(statuses), "current models come first, then legacy ones"

    for name, spec in CATALOG.items():
        model = listed[name]
        if spec.legacy is None:
            assert model.status == video_service_pb2.MODEL_STATUS_CURRENT, name
            assert (model.replacement, model.status_reason) == ("", ""), name
        else:
            assert model.status == video_service_pb2.MODEL_STATUS_LEGACY, name
            assert model.replacement == spec.legacy.replacement, name
            assert model.status_reason == spec.legacy.status, name
        assert model.third_party == spec.third_party, name
        assert (model.audio, model.seed, model.content_moderation) == (
            spec.audio,
            spec.seed,
            spec.content_moderation,
        ), name
        if spec.prompt_max_utf16 is None:
            assert not model.HasField("prompt_max_length"), name
        else:
            assert model.prompt_max_length == spec.prompt_max_utf16, name

        if spec.duration is None:
            assert not model.HasField("durations"), name
        else:
            assert list(model.durations.allowed_seconds) == sorted(spec.duration.values), name
            assert model.durations.default_seconds == spec.duration.default, name

        assert [m.mode for m in model.modes] == [_MODE[mode.value] for mode in spec.modes], name
        for mode_message, mode_spec in zip(model.modes, spec.modes.values(), strict=True):
            where = f"{name} {mode_message.mode}"
            assert list(mode_message.sizes) == [r.replace(":", "x") for r in mode_spec.ratios], where
            assert all("x" in size and ":" not in size for size in mode_message.sizes), where
            default = mode_spec.default_ratio.replace(":", "x") if mode_spec.default_ratio else ""
            assert mode_message.default_size == default, where
            assert not default or default in mode_message.sizes, where
            assert mode_message.prompt == _PROMPT[mode_spec.prompt], where
            _refs(mode_message, "reference_images", mode_spec.image_refs)
            _refs(mode_message, "references", mode_spec.video_refs)

        assert [o.key for o in model.provider_options] == sorted(spec.options), name
        assert model.provider_options_closed == spec.strict_keys, name
        for option in model.provider_options:
            rule = spec.options[option.key]
            where = f"{name} provider_options.{option.key}"
            assert option.type == _OPTION[rule.kind], where
            assert tuple(option.allowed_values) == rule.values, where
            for field, value in (("minimum", rule.minimum), ("maximum", rule.maximum)):
                assert (getattr(option, field) if option.HasField(field) else None) == value, where
            max_length = option.max_length if option.HasField("max_length") else None
            assert max_length == rule.max_utf16, where


async def test_list_models_needs_a_caller_key_when_keys_are_configured(tmp_path: Path) -> None:
    key = "k" * 24
    server = await start_server(str(tmp_path), api_keys={"alice": key})
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await server.stub.ListModels(video_service_pb2.ListModelsRequest())
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        response = await server.stub.ListModels(
            video_service_pb2.ListModelsRequest(), metadata=server.metadata(key)
        )
        assert {m.id for m in response.models} == set(CATALOG)
    finally:
        await stop_server(server)


async def test_an_unknown_model_goes_to_runway_and_its_refusal_names_the_known_models(
    videogen_server: RunningServer,
) -> None:
    creates = _creates(videogen_server)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await videogen_server.stub.Generate(
            video_service_pb2.GenerateRequest(model="gen4", prompt="a paper boat", seconds=5)
        )
    err = refused.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _creates(videogen_server) == creates + 1, "an unknown model id is still sent to Runway"

    message = err.details() or ""
    assert "'gen4'" in message
    for name in CURRENT:
        assert name in message, (name, message)
    for legacy in ("gen4_aleph", "gen3a_turbo", "veo3"):
        assert f" {legacy}," not in message and not message.endswith(legacy), message

    status = rpc_status.from_call(err)
    assert status is not None
    info, bad_request = _details(status)
    assert info.reason == "UPSTREAM_REJECTED"
    (violation,) = [v for v in bad_request.field_violations if v.field == "model"]
    for name in CURRENT:
        assert name in violation.description, (name, violation.description)
    assert "Invalid input" in violation.description  # Runway's own words are kept


async def test_a_known_models_refusal_is_left_as_runway_said_it(videogen_server: RunningServer) -> None:
    """Only an id the catalog lacks gets the list: a known model's errors stay about its fields."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await videogen_server.stub.Generate(
            video_service_pb2.GenerateRequest(model="veo3.1", prompt="x", seconds=5)
        )
    assert "known models" not in (refused.value.details() or "")


def _creates(server: RunningServer) -> int:
    return sum(n for (method, _route), n in server.simulator.request_counts.items() if method == "POST")


def _details(status: status_pb2.Status) -> tuple[error_details_pb2.ErrorInfo, error_details_pb2.BadRequest]:
    info, bad_request = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    found = [detail.Unpack(info) or detail.Unpack(bad_request) for detail in status.details]
    assert sum(found) >= 2, status
    return info, bad_request
