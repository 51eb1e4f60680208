"""Issue 8 item 4: provider_options cannot carry what the typed fields refuse.

Through the real gRPC API and the simulator: a reserved (service-owned) key is refused for every model,
unknown ones included, and every URI anywhere in provider_options (nested lists and objects too) passes the
same asset check as input_reference. Each refusal is INVALID_ARGUMENT naming the option and reaches nobody:
the simulator sees no POST at all."""

from __future__ import annotations

from typing import Any

import grpc
from rpc_helpers import expect_error
from videogen.v1 import video_service_pb2 as pb

VID = "https://example.com/in.mp4"


def _posts(sim: Any) -> int:
    return sum(n for (method, _), n in sim.request_counts.items() if method == "POST")


def _req(model: str, options: dict[str, Any], **kw: Any) -> pb.GenerateRequest:
    req = pb.GenerateRequest(model=model, **kw)
    req.provider_options.update(options)
    return req


async def _refused(server: Any, req: pb.GenerateRequest, *fields: str) -> dict[str, str]:
    before = _posts(server.simulator)
    err = await expect_error(server.stub.Generate(req, timeout=30))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT, err
    assert err.reason == "INVALID_ARGUMENT"  # ours, not Runway's UPSTREAM_REJECTED
    assert set(fields) <= set(err.violations), err.violations
    assert _posts(server.simulator) == before, "a refused request reached Runway"
    return err.violations


async def test_reserved_keys_are_refused_for_unknown_models(videogen_server):
    req = _req(
        "foo",
        {"promptImage": "http://169.254.169.254/latest/meta-data/", "videoUri": "file:///etc/passwd"},
        prompt="p",
    )
    v = await _refused(videogen_server, req, "provider_options.promptImage", "provider_options.videoUri")
    assert "input_reference" in v["provider_options.promptImage"]  # tells the caller the typed field
    # Even a well-formed URI: the typed field is the only way in (it alone sets the mode and the path).
    req = _req("foo", {"promptImage": "https://example.com/a.png"}, prompt="p")
    await _refused(videogen_server, req, "provider_options.promptImage")


async def test_aleph2_keyframes_uris_are_checked(videogen_server):
    for uri in ("https://user:secret@example.com/a.png", "http://10.0.0.5/b.png", "https://10.0.0.5/b.png"):
        req = _req("aleph2", {"keyframes": [{"uri": uri, "at": 0.5}]}, video_uri=VID)
        v = await _refused(videogen_server, req, "provider_options.keyframes[0].uri")
        assert "secret" not in str(v)  # the credentials are not echoed back
    # A keyframe is an image: a video data URI has the wrong media type.
    req = _req("aleph2", {"keyframes": [{"uri": "data:video/mp4;base64,AAAA", "at": 0.1}]}, video_uri=VID)
    await _refused(videogen_server, req, "provider_options.keyframes[0].uri")
    # A good keyframe still goes through to Runway.
    before = _posts(videogen_server.simulator)
    ok = _req("aleph2", {"keyframes": [{"uri": "https://example.com/k.png", "at": 0.5}]}, video_uri=VID)
    video = (await videogen_server.stub.Generate(ok, timeout=30)).video
    assert video.id and _posts(videogen_server.simulator) == before + 1


async def test_seedance2_reference_audio_uris_are_checked(videogen_server):
    for uri in ("http://10.0.0.5/a.mp3", "file:///etc/passwd", "data:image/png;base64,AAAA"):
        req = _req("seedance2", {"referenceAudio": [{"type": "audio", "uri": uri}]}, prompt="p")
        await _refused(videogen_server, req, "provider_options.referenceAudio[0].uri")


async def test_uris_nested_anywhere_in_unknown_options_are_checked(videogen_server):
    options = {
        "character": {"type": "image", "uri": "https://127.0.0.1/a.png"},
        "deep": {"list": [1, "fine text", {"x": ["gs://bucket/secret.mp4"]}]},
        "js": "javascript:alert(1)",
        "ftp": "FTP://example.com/a.png",
        "custom": "weird+scheme://host/x",
    }
    await _refused(
        videogen_server,
        _req("foo", options, prompt="p"),
        "provider_options.character.uri",
        "provider_options.deep.list[2].x[0]",
        "provider_options.js",
        "provider_options.ftp",
        "provider_options.custom",
    )


async def test_ordinary_option_text_still_reaches_runway(videogen_server):
    # Ratios, times and sentences with a colon are not URIs: an unknown model's options go through
    # (the simulator then refuses the unknown model itself, which proves the POST was sent).
    options = {"ratio2": "16:9", "at": "00:01:30", "note": "note: keep it calm", "n": 2, "ok": True}
    before = _posts(videogen_server.simulator)
    err = await expect_error(videogen_server.stub.Generate(_req("foo", options, prompt="p"), timeout=30))
    assert err.reason == "UPSTREAM_REJECTED", err
    assert _posts(videogen_server.simulator) == before + 1
