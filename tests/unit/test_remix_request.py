"""Remix's request, from the wire to Runway's body: RemixRequest -> RemixSpec (api/convert.py, sharing
GenerateRequest's conversion) and the plan with the provider's own output URL as the video input
(providers/runway/mapping.py `own_video`), which skips the caller-URI checks for that URL only."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server import errors
from videogen_server.api.convert import generate_spec, remix_spec
from videogen_server.domain.generation import GenerateSpec, GenerationMode, MediaRef
from videogen_server.providers.runway.mapping import build_upstream_request

SIM_OUTPUT = "http://127.0.0.1:41234/_sim/outputs/3f1c0000-0000-4000-8000-000000000000/0.mp4?_jwt=a.b"
SOURCE = "3f1c0000-0000-4000-8000-000000000001"


def test_the_remix_fields_convert_as_generates_do_and_the_model_defaults_to_aleph2() -> None:
    request = pb.RemixRequest(
        id=SOURCE,
        index=0,
        prompt="make it snow",
        seed=7,
        references=[pb.MediaReference(uri="https://example.com/r.mp4", tag="r")],
        request_id="k-1",
    )
    request.provider_options.update({"targetAspectRatio": "16:9"})
    remix = remix_spec(request)
    assert remix.source_id == SOURCE and remix.index == 0 and remix.request_id == "k-1"
    assert remix.spec.model == "aleph2" and remix.spec.video_uri == "" and remix.spec.input_reference == ""
    assert remix.spec.seed == 7 and remix.spec.references == (MediaRef("https://example.com/r.mp4", "r"),)
    assert remix.spec.provider_options == {"targetAspectRatio": "16:9"}
    same = generate_spec(
        pb.GenerateRequest(
            model="aleph2",
            prompt="make it snow",
            seed=7,
            references=request.references,
            provider_options=request.provider_options,
            request_id="k-1",
        )
    )
    assert remix.spec == same  # one conversion for both messages
    assert remix_spec(pb.RemixRequest(id=SOURCE, model="gen4.5")).spec.model == "gen4.5"


def test_a_negative_index_and_oversized_fields_are_refused_on_the_message() -> None:
    with pytest.raises(errors.InvalidArgument) as bad:
        remix_spec(pb.RemixRequest(id=SOURCE, index=-1))
    assert [v.field for v in bad.value.violations] == ["index"]
    options = struct_pb2.Struct()
    options.update({f"k{i}": i for i in range(2000)})
    with pytest.raises(errors.InvalidArgument) as big:
        remix_spec(pb.RemixRequest(id=SOURCE, provider_options=options))
    assert [v.field for v in big.value.violations] == ["provider_options"]


def test_the_providers_own_output_url_is_sent_as_the_video_input() -> None:
    spec = GenerateSpec(model="aleph2", prompt="make it snow")
    plan = build_upstream_request(spec, own_video=SIM_OUTPUT)
    assert plan.mode is GenerationMode.VIDEO_TO_VIDEO and plan.path == "/v1/video_to_video"
    assert plan.body["videoUri"] == SIM_OUTPUT
    assert SIM_OUTPUT not in str({k: v for k, v in plan.body.items() if k != "videoUri"})


def test_a_callers_uris_are_still_checked_beside_an_own_video() -> None:
    with pytest.raises(errors.InvalidArgument) as caller_url:
        build_upstream_request(GenerateSpec(model="aleph2", prompt="x", video_uri=SIM_OUTPUT))
    assert [v.field for v in caller_url.value.violations] == ["video_uri"]
    refs = (MediaRef("http://127.0.0.1/x.png"),)
    with pytest.raises(errors.InvalidArgument) as ref:
        build_upstream_request(
            GenerateSpec(model="aleph2", prompt="x", reference_images=refs), own_video=SIM_OUTPUT
        )
    assert "reference_images[0].uri" in [v.field for v in ref.value.violations]
    with pytest.raises(errors.InvalidArgument) as option:
        build_upstream_request(
            GenerateSpec(model="aleph2", prompt="x", provider_options={"extra": "http://10.0.0.1/a"}),
            own_video=SIM_OUTPUT,
        )
    assert "provider_options.extra" in [v.field for v in option.value.violations]


def test_a_model_that_takes_no_video_is_named_as_the_problem() -> None:
    with pytest.raises(errors.InvalidArgument) as bad:
        build_upstream_request(GenerateSpec(model="gen4.5", prompt="x"), own_video=SIM_OUTPUT)
    assert [v.field for v in bad.value.violations] == ["model"]
    assert "video-to-video" in bad.value.violations[0].description
