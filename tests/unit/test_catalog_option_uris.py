"""Issue 8 item 4, on the catalog alone: reserved keys and URIs inside provider_options."""

from __future__ import annotations

from typing import Any

import pytest
from videogen_server.domain.generation import GenerateSpec
from videogen_server.errors import FieldViolation, InvalidArgument
from videogen_server.providers.runway.assets import AssetKind, check_asset_uri
from videogen_server.providers.runway.mapping import build_upstream_request

IMG = "https://example.com/cat.png"
VID = "https://example.com/clip.mp4"
PNG = "data:image/png;base64,iVBORw0KGgo="
MP3 = "data:audio/mpeg;base64,SUQzAwAA"
MP4 = "data:video/mp4;base64,AAAAGGZ0eXA="


def violations(**kw: Any) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as info:
        build_upstream_request(GenerateSpec(**kw))
    out: dict[str, str] = {}
    for v in info.value.violations:
        assert isinstance(v, FieldViolation)
        out[v.field] = v.description
    return out


def body(**kw: Any) -> dict[str, Any]:
    return build_upstream_request(GenerateSpec(**kw)).body


@pytest.mark.parametrize(
    "key",
    ["model", "promptText", "promptImage", "videoUri", "promptVideo", "ratio", "duration", "seed",
     "audio", "contentModeration", "references", "referenceVideos"],
)  # fmt: skip
@pytest.mark.parametrize("model", ["foo", "wan3", "gen4.5"])
def test_reserved_keys_are_refused_for_every_model(model: str, key: str) -> None:
    v = violations(model=model, prompt="p", provider_options={key: "https://example.com/a.png"})
    assert "set by the service" in v[f"provider_options.{key}"]


@pytest.mark.parametrize(
    "uri",
    [
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        "https://user:secret@example.com/a.png",
        "http://10.0.0.5/b.png",
        "https://10.0.0.5/b.png",
        "https://[::1]/a.png",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "gs://bucket/a.png",
        "s3://bucket/a.png",
        "ftp://example.com/a.png",
        "data:text/html;base64,PGI+",
        "runway://abc",  # too short
        "anything-else://x",
        "//example.com/a.png",  # scheme-relative
        " https://10.0.0.5/b.png",  # leading space does not hide it
        "https://example.com/\x00.png",
    ],
)
def test_uris_in_unknown_options_pass_the_asset_check(uri: str) -> None:
    v = violations(model="foo", prompt="p", provider_options={"x": uri, "n": {"l": [{"u": uri}]}})
    assert {"provider_options.x", "provider_options.n.l[0].u"} <= set(v), v
    assert "secret" not in " ".join(v.values())


@pytest.mark.parametrize("uri", [IMG, "runway://upload/abcdef0123", PNG, MP3, MP4])
def test_good_uris_of_any_media_kind_pass_in_unknown_options(uri: str) -> None:
    assert body(model="foo", prompt="p", provider_options={"x": [{"uri": uri}]})["x"] == [{"uri": uri}]


@pytest.mark.parametrize(
    "text",
    ["16:9", "1280:720", "00:01:30", "note: keep it calm", "a calm lake", "mp4", "422 HQ", "", "x:y",
     "ratio:16:9", "Step 1: pan left", "auto_720p", "C:\\not-a-scheme"],
)  # fmt: skip
def test_ordinary_text_is_not_taken_for_a_uri(text: str) -> None:
    assert body(model="foo", prompt="p", provider_options={"t": text, "l": [text]})["t"] == text


def test_known_option_keys_carry_their_asset_kind() -> None:
    ok = body(model="aleph2", video_uri=VID, provider_options={"keyframes": [{"uri": PNG, "at": 0.5}]})
    assert ok["keyframes"][0]["uri"] == PNG
    v = violations(model="aleph2", video_uri=VID, provider_options={"keyframes": [{"uri": MP4, "at": 0.5}]})
    assert "image/*" in v["provider_options.keyframes[0].uri"]
    audio = [{"type": "audio", "uri": MP3}]
    assert body(model="seedance2", prompt="p", provider_options={"referenceAudio": audio})["referenceAudio"]
    v = violations(model="seedance2", prompt="p", provider_options={"referenceAudio": [{"uri": PNG}]})
    assert "audio/*" in v["provider_options.referenceAudio[0].uri"]
    # The kind follows the key, whatever the model: an unknown model's keyframes are images too.
    v = violations(model="foo", prompt="p", provider_options={"keyframes": [{"uri": MP3}]})
    assert "image/*" in v["provider_options.keyframes[0].uri"]


def test_every_bad_uri_is_reported_with_its_path() -> None:
    kf = [{"uri": "http://10.0.0.5/a.png", "at": 0.1}, {"uri": IMG, "at": 0.5}, {"uri": "file:///x", "at": 1}]
    v = violations(model="aleph2", video_uri=VID, provider_options={"keyframes": kf})
    assert {"provider_options.keyframes[0].uri", "provider_options.keyframes[2].uri"} <= set(v)
    assert "provider_options.keyframes[1].uri" not in v


def test_a_field_of_no_known_kind_takes_any_media_data_uri_under_the_same_rules() -> None:
    for uri in (PNG, MP3, MP4, IMG, "runway://upload/abcdef0123"):
        assert check_asset_uri(uri, None) is None, uri
    problem = check_asset_uri("data:text/html;base64,PGI+", None)
    assert problem is not None and "image/*, video/* or audio/*" in problem
    for uri in ("http://example.com/a.png", "https://10.0.0.5/a.png", "data:image/png;base64,@@"):
        assert check_asset_uri(uri, None) is not None, uri
    # A known kind is still strict.
    assert check_asset_uri(MP3, AssetKind.IMAGE) is not None
