from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from videogen_server.domain.generation import GenerateSpec, GenerationMode, MediaRef
from videogen_server.errors import FieldViolation, InvalidArgument
from videogen_server.providers.runway.catalog import CATALOG
from videogen_server.providers.runway.mapping import build_upstream_request, wire_path_to_field
from videogen_server.providers.runway.validation import utf16_len

IMG = "https://example.com/cat.png"
VID = "https://example.com/clip.mp4"
T2V, I2V, V2V = GenerationMode.TEXT_TO_VIDEO, GenerationMode.IMAGE_TO_VIDEO, GenerationMode.VIDEO_TO_VIDEO


def ok(**kw: Any):  # type: ignore[no-untyped-def]
    return build_upstream_request(GenerateSpec(**kw))


def bad(**kw: Any) -> list[FieldViolation]:
    with pytest.raises(InvalidArgument) as info:
        build_upstream_request(GenerateSpec(**kw))
    assert info.value.violations, "InvalidArgument without violations"
    return info.value.violations


def fields(violations: list[FieldViolation]) -> set[str]:
    return {v.field for v in violations}


def desc(violations: list[FieldViolation], name: str) -> str:
    return " | ".join(v.description for v in violations if v.field == name)


# --- mode detection ------------------------------------------------------------------------------


def test_mode_detection_and_paths() -> None:
    assert ok(model="gen4.5", prompt="p").path == "/v1/text_to_video"
    r = ok(model="gen4.5", prompt="p", input_reference=IMG)
    assert (r.mode, r.path, r.body["promptImage"]) == (I2V, "/v1/image_to_video", IMG)
    r = ok(model="aleph2", video_uri=VID)
    assert (r.mode, r.path, r.body["videoUri"]) == (V2V, "/v1/video_to_video", VID)


def test_both_inputs_is_invalid() -> None:
    v = bad(model="gen4.5", prompt="p", input_reference=IMG, video_uri=VID)
    assert {"input_reference", "video_uri"} <= fields(v)


def test_model_required() -> None:
    assert "model" in fields(bad(model="", prompt="p"))
    assert "model" in fields(bad(model="  ", prompt="p"))


# --- per model -----------------------------------------------------------------------------------


def test_gen45_defaults() -> None:
    r = ok(model="gen4.5", prompt="a cat")
    assert r.body == {"model": "gen4.5", "promptText": "a cat", "ratio": "1280:720", "duration": 5}
    assert (r.seconds, r.size, r.mode) == (5, "1280x720", T2V)


def test_gen45_ratios_per_endpoint() -> None:
    v = bad(model="gen4.5", prompt="p", size="960x960")
    assert "1280x720, 720x1280" in desc(v, "size") and "960x960" not in desc(v, "size")
    for size in ("1280x720", "720x1280", "1104x832", "960x960", "832x1104", "1584x672"):
        r = ok(model="gen4.5", prompt="p", input_reference=IMG, size=size)
        assert r.body["ratio"] == size.replace("x", ":") and r.size == size


def test_gen45_durations_and_prompt_required() -> None:
    for s in range(2, 11):
        assert ok(model="gen4.5", prompt="p", seconds=s).body["duration"] == s
    for s in (1, 11, 0, -3, 10**9):
        assert "seconds" in fields(bad(model="gen4.5", prompt="p", seconds=s))
    assert "2 to 10" in desc(bad(model="gen4.5", prompt="p", seconds=11), "seconds")
    assert "prompt" in fields(bad(model="gen4.5"))
    assert "prompt" in fields(bad(model="gen4.5", input_reference=IMG, prompt="   "))


def test_gen4_turbo() -> None:
    r = ok(model="gen4_turbo", input_reference=IMG)
    assert r.body == {"model": "gen4_turbo", "promptImage": IMG, "ratio": "1280:720", "duration": 5}
    assert "promptText" not in r.body
    assert ok(model="gen4_turbo", input_reference=IMG, seconds=10).body["duration"] == 10
    v = bad(model="gen4_turbo", prompt="p")  # text-to-video not supported
    assert "input_reference" in fields(v) and "image-to-video" in desc(v, "input_reference")
    assert "video_uri" in fields(bad(model="gen4_turbo", video_uri=VID))
    assert "size" in fields(bad(model="gen4_turbo", input_reference=IMG, size="1920x1080"))


@pytest.mark.parametrize("model", ["veo3.1", "veo3.1_fast"])
def test_veo31(model: str) -> None:
    r = ok(model=model, prompt="p")
    assert r.body == {"model": model, "promptText": "p", "ratio": "1280:720", "duration": 8}
    assert r.seconds == 8
    for s in (4, 6, 8):
        assert ok(model=model, prompt="p", seconds=s).body["duration"] == s
    v = bad(model=model, prompt="p", seconds=5)
    assert desc(v, "seconds") == f"must be one of 4, 6, 8 for {model}"
    for size in ("1280x720", "720x1280", "1080x1920", "1920x1080"):
        assert ok(model=model, prompt="p", size=size).size == size
    assert "1080x1920" in desc(bad(model=model, prompt="p", size="960x960"), "size")
    # I2V prompt optional, T2V required
    assert "promptText" not in ok(model=model, input_reference=IMG).body
    assert "prompt" in fields(bad(model=model))
    # audio, negativePrompt
    assert ok(model=model, prompt="p", audio=False).body["audio"] is False
    r = ok(model=model, prompt="p", provider_options={"negativePrompt": "dogs"})
    assert r.body["negativePrompt"] == "dogs"
    # contentModeration not accepted, strict keys
    assert "content_moderation.public_figure_threshold" in fields(
        bad(model=model, prompt="p", public_figure_threshold="low")
    )
    v = bad(model=model, prompt="p", provider_options={"outputFormat": "mp4", "foo": 1})
    assert {"provider_options.outputFormat", "provider_options.foo"} <= fields(v)
    assert "video_uri" in fields(bad(model=model, prompt="p", video_uri=VID))


def test_aleph2() -> None:
    r = ok(model="aleph2", video_uri=VID)
    assert r.body == {"model": "aleph2", "videoUri": VID}
    assert (r.seconds, r.size) == (None, "")
    r = ok(
        model="aleph2",
        video_uri=VID,
        prompt="make it snow",
        seed=7,
        public_figure_threshold="auto",
        provider_options={"targetAspectRatio": "16:9", "keyframes": [{"uri": IMG, "at": 0.5}]},
    )
    assert r.body["targetAspectRatio"] == "16:9" and r.body["contentModeration"] == {
        "publicFigureThreshold": "auto"
    }
    v = bad(model="aleph2", video_uri=VID, size="1280x720", seconds=5, audio=True)
    assert {"size", "seconds", "audio"} <= fields(v)
    assert "targetAspectRatio" in desc(v, "size")
    assert "provider_options.targetAspectRatio" in fields(
        bad(model="aleph2", video_uri=VID, provider_options={"targetAspectRatio": "5:4"})
    )
    assert "provider_options.ratio" in fields(
        bad(model="aleph2", video_uri=VID, provider_options={"ratio": "1280:720"})
    )
    assert "provider_options.whatever" in fields(
        bad(model="aleph2", video_uri=VID, provider_options={"whatever": 1})
    )
    assert "video_uri" in fields(bad(model="aleph2", prompt="p"))
    assert "input_reference" in fields(bad(model="aleph2", input_reference=IMG))


def test_first_party_refuses_references() -> None:
    for model, kw in (
        ("gen4.5", {"prompt": "p"}),
        ("gen4_turbo", {"input_reference": IMG}),
        ("veo3.1", {"prompt": "p"}),
        ("aleph2", {"video_uri": VID}),
    ):
        v = bad(model=model, references=(MediaRef(VID),), reference_images=(MediaRef(IMG),), **kw)
        assert {"references", "reference_images"} <= fields(v)
        assert "does not accept" in desc(v, "references")


def test_third_party_seedance2() -> None:
    r = ok(
        model="seedance2",
        prompt="p",
        size="1920x1080",
        reference_images=(MediaRef(IMG),),
        references=(MediaRef(VID),),
        audio=True,
    )
    assert r.body == {
        "model": "seedance2",
        "promptText": "p",
        "ratio": "1920:1080",
        "duration": 5,
        "audio": True,
        "references": [{"uri": IMG}],
        "referenceVideos": [{"type": "video", "uri": VID}],
    }
    r = ok(model="seedance2", video_uri=VID)
    assert r.body["promptVideo"] == VID and "videoUri" not in r.body and r.size == ""
    v = bad(model="seedance2", prompt="p", reference_images=tuple(MediaRef(IMG) for _ in range(10)))
    assert "reference_images" in fields(v)
    assert "reference_images" in fields(
        bad(model="seedance2", input_reference=IMG, reference_images=(MediaRef(IMG),))
    )
    assert "reference_images[0].tag" in fields(
        bad(model="seedance2", prompt="p", reference_images=(MediaRef(IMG, tag="x"),))
    )
    assert "seconds" in fields(bad(model="seedance2", prompt="p", seconds=3))
    assert "prompt" in fields(bad(model="seedance2", prompt="x" * 3501))


def test_third_party_kling() -> None:
    r = ok(model="kling2.5_turbo_pro", prompt="p")
    assert r.body == {"model": "kling2.5_turbo_pro", "promptText": "p", "duration": 5}
    assert ok(model="kling2.5_turbo_pro", prompt="p", size="1920x1080").body["ratio"] == "1920:1080"
    assert "size" in fields(bad(model="kling2.5_turbo_pro", prompt="p", input_reference=IMG, size="1280x720"))
    assert "seed" in fields(bad(model="kling2.5_turbo_pro", prompt="p", seed=1))
    assert "seconds" in fields(bad(model="kling2.5_turbo_pro", prompt="p", seconds=7))


@pytest.mark.parametrize(
    "legacy,replacement",
    [("gen4_aleph", "aleph2"), ("gen3a_turbo", "gen4_turbo"), ("veo3", "veo3.1")],
)
def test_legacy_rejected_locally(legacy: str, replacement: str) -> None:
    assert CATALOG[legacy].legacy is not None
    v = bad(model=legacy, prompt="p", input_reference=IMG)
    assert fields(v) == {"model"}
    assert f"use {replacement}" in desc(v, "model")


# --- shared rules --------------------------------------------------------------------------------


def test_all_violations_collected() -> None:
    v = bad(
        model="veo3.1",
        prompt="bad\x07",
        seconds=5,
        size="12x",
        seed=-1,
        public_figure_threshold="high",
        input_reference="http://example.com/a.png",
    )
    assert {
        "prompt",
        "seconds",
        "size",
        "seed",
        "content_moderation.public_figure_threshold",
        "input_reference",
    } <= fields(v)


def test_prompt_rules() -> None:
    assert ok(model="gen4.5", prompt="line1\nline2\r\n\ttab").body["promptText"] == "line1\nline2\r\n\ttab"
    for ch in ("\x00", "\x1b", "\x7f", "\x85", "\ud800"):
        assert "prompt" in fields(bad(model="gen4.5", prompt=f"a{ch}b"))
    # UTF-16: an emoji outside the BMP counts 2
    assert utf16_len("😀") == 2 and utf16_len("é") == 1
    assert ok(model="gen4.5", prompt="😀" * 500).body["promptText"]
    v = bad(model="gen4.5", prompt="😀" * 500 + "a")
    assert "1000 UTF-16" in desc(v, "prompt") and "1001" in desc(v, "prompt")
    assert ok(model="gen4.5", prompt="a" * 1000)


def test_seed_range() -> None:
    assert ok(model="gen4.5", prompt="p", seed=0).body["seed"] == 0
    assert ok(model="gen4.5", prompt="p", seed=4294967295).body["seed"] == 4294967295
    for seed in (-1, 4294967296, 2**63):
        assert "seed" in fields(bad(model="gen4.5", prompt="p", seed=seed))


def test_size_format() -> None:
    for size in ("1280:720", "1280X720", "x720", "1280x", "0x720", "1280x720x3", " 1280x720", "wide"):
        v = bad(model="gen4.5", prompt="p", size=size)
        assert "WIDTHxHEIGHT" in desc(v, "size")


def test_public_figure_threshold() -> None:
    r = ok(model="gen4.5", prompt="p", public_figure_threshold="low")
    assert r.body["contentModeration"] == {"publicFigureThreshold": "low"}
    assert "content_moderation.public_figure_threshold" in fields(
        bad(model="gen4.5", prompt="p", public_figure_threshold="off")
    )


def test_audio_only_where_supported() -> None:
    assert "audio" in fields(bad(model="gen4.5", prompt="p", audio=True))
    assert "audio" not in ok(model="gen4.5", prompt="p", audio=False).body


def test_asset_violations_carry_field_names() -> None:
    v = bad(
        model="seedance2",
        prompt="p",
        reference_images=(MediaRef(IMG), MediaRef("https://192.168.0.1/x.png")),
        references=(MediaRef("data:image/png;base64,AAAA"),),
    )
    assert {"reference_images[1].uri", "references[0].uri"} <= fields(v)
    assert "input_reference" in fields(
        bad(model="gen4.5", prompt="p", input_reference="data:video/mp4;base64,AAAA")
    )
    assert "video_uri" in fields(bad(model="aleph2", video_uri="file:///etc/passwd"))


def test_provider_options_collisions() -> None:
    v = bad(
        model="gen4.5", prompt="p", provider_options={"ratio": "960:960", "model": "x", "promptText": "y"}
    )
    assert {"provider_options.ratio", "provider_options.model", "provider_options.promptText"} <= fields(v)
    assert "size" in desc(v, "provider_options.ratio")
    # negativePrompt is veo-only, even on the non-strict gen4.5
    v = bad(model="gen4.5", prompt="p", provider_options={"negativePrompt": "x"})
    assert "veo3.1" in desc(v, "provider_options.negativePrompt")
    # non-strict gen4.5 passes unknown keys and validates known ones
    assert (
        ok(model="gen4.5", prompt="p", provider_options={"outputFormat": "prores"}).body["outputFormat"]
        == "prores"
    )
    assert "provider_options.outputFormat" in fields(
        bad(model="gen4.5", prompt="p", provider_options={"outputFormat": "gif"})
    )
    assert "provider_options.negativePrompt" in fields(
        bad(model="veo3.1", prompt="p", provider_options={"negativePrompt": "x" * 1001})
    )


def test_unknown_model_pass_through() -> None:
    r = ok(
        model="wan9",
        prompt="p",
        size="1920x1080",
        seconds=7,
        seed=3,
        audio=True,
        public_figure_threshold="low",
        provider_options={"cfgScale": 0.3},
    )
    assert r.body == {
        "model": "wan9",
        "promptText": "p",
        "ratio": "1920:1080",
        "duration": 7,
        "seed": 3,
        "audio": True,
        "contentModeration": {"publicFigureThreshold": "low"},
        "cfgScale": 0.3,
    }
    assert (r.seconds, r.size, r.path) == (7, "1920x1080", "/v1/text_to_video")
    r = ok(model="wan9", video_uri=VID)
    assert r.body == {"model": "wan9", "videoUri": VID} and r.seconds is None and r.size == ""
    # input rules still hold for unknown models
    assert {"input_reference", "provider_options.duration"} <= fields(
        bad(
            model="wan9",
            input_reference="http://x.example/a.png",
            seconds=5,
            provider_options={"duration": 6},
        )
    )


def test_spec_not_mutated_and_bodies_independent() -> None:
    spec = GenerateSpec(model="gen4.5", prompt="p", provider_options={"outputFormat": "mp4"})
    r1 = build_upstream_request(spec)
    r1.body["x"] = 1
    assert "x" not in build_upstream_request(replace(spec)).body
    assert spec.provider_options == {"outputFormat": "mp4"}


@pytest.mark.parametrize(
    "path,expected",
    [
        (["promptText"], "prompt"),
        (["promptImage"], "input_reference"),
        (["promptImage", 0, "uri"], "input_reference"),
        (["ratio"], "size"),
        (["duration"], "seconds"),
        (["videoUri"], "video_uri"),
        (["promptVideo"], "video_uri"),
        (["seed"], "seed"),
        (["audio"], "audio"),
        (["model"], "model"),
        (["contentModeration", "publicFigureThreshold"], "content_moderation.public_figure_threshold"),
        (["contentModeration"], "content_moderation"),
        (["references", 2, "uri"], "reference_images[2].uri"),
        (["referenceVideos", 0, "uri"], "references[0].uri"),
        (["negativePrompt"], "provider_options.negativePrompt"),
        (["keyframes", 1, "range", "start_seconds"], "provider_options.keyframes[1].range.start_seconds"),
        ([], ""),
    ],
)
def test_wire_path_to_field(path: list[str | int], expected: str) -> None:
    assert wire_path_to_field(path) == expected


def test_provider_options_must_be_json() -> None:
    v = bad(model="wan9", prompt="p", provider_options={"x": float("nan"), "y": object()})
    assert {"provider_options.x", "provider_options.y"} <= fields(v)


@pytest.mark.parametrize("value", ["16:9", 1.5, -0.1, True])
def test_kling_cfg_scale_must_be_a_number_from_0_to_1(value: object) -> None:
    # Found by the SDK-oracle property test: the catalog passed any value through (the SDK types a float).
    spec = GenerateSpec(model="kling2.5_turbo_pro", prompt="a boat", provider_options={"cfgScale": value})
    with pytest.raises(InvalidArgument) as refused:
        build_upstream_request(spec)
    assert "provider_options.cfgScale" in {v.field for v in refused.value.violations}
