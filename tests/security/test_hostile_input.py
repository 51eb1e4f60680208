"""Hostile input through the real gRPC API: asset URIs, prompts, control characters, huge strings,
out-of-range numbers, malformed sizes and ids. Every refusal is INVALID_ARGUMENT naming the field (or, for a
message over the transport cap, grpc's own RESOURCE_EXHAUSTED) and nothing refused reaches Runway."""

from __future__ import annotations

import uuid

import grpc
from rpc_helpers import expect_error, expect_stream_error
from videogen.v1 import video_service_pb2 as pb

MIB = 1024 * 1024
PNG_PREFIX = "data:image/png;base64,"
B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def _posts(sim) -> int:
    return sum(n for (method, _), n in sim.request_counts.items() if method == "POST")


async def _expect_refused(server, req: pb.GenerateRequest, field: str) -> None:
    before = _posts(server.simulator)
    err = await expect_error(server.stub.Generate(req, timeout=30))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT, (field, err)
    assert field in err.violations, (field, err.violations)
    assert err.reason == "INVALID_ARGUMENT"  # ours, not Runway's UPSTREAM_REJECTED
    assert len(err.message) < 2000  # the message never echoes a huge input
    assert _posts(server.simulator) == before, field


async def _expect_accepted(server, req: pb.GenerateRequest) -> None:
    before = _posts(server.simulator)
    video = (await server.stub.Generate(req, timeout=30)).video
    assert video.id and _posts(server.simulator) == before + 1


def _i2v(uri: str) -> pb.GenerateRequest:
    return pb.GenerateRequest(model="gen4_turbo", prompt="waves", input_reference=uri)


def _data_uri(length: int, media: str = "image/png") -> str:
    prefix = f"data:{media};base64,"
    body = length - len(prefix)
    return prefix + "A" * (body - body % 4)


ACCEPTED_IMAGE_URIS = [
    "https://example.com/a.png",
    "https://cdn.example.co.uk:8443/path/a.png?x=1&y=%20#frag",
    "https://xn--bcher-kva.example/a.png",
    "runway://upload/abcdef0123",
    PNG_PREFIX + B64,
    "data:image/jpeg;charset=binary;base64," + B64,
]

REFUSED_IMAGE_URIS = [
    "http://example.com/a.png",  # not https
    "https://10.0.0.1/a.png",  # IP literals, in their many spellings
    "https://127.0.0.1:8080/a.png",
    "https://[::1]/a.png",
    "https://2130706433/a.png",
    "https://0x7f000001/a.png",
    "https://0177.0.0.1/a.png",
    "https://localhost/a.png",  # no top-level domain
    "https://metadata.google.internal./a.png",  # empty label
    "https://user:pw@example.com/a.png",  # credentials
    "https://example.com\\@evil.example/a.png",
    "https://exa mple.com/a.png",
    "https://example.com/a.png\n",
    "https://example.com/\x00.png",
    "https://example.com/\u202e.png",  # bidi override (a format character)
    "https://e.co",  # shorter than Runway's 13 characters
    "https://example.com/" + "a" * 2100,  # longer than 2048
    "file:///etc/passwd",
    "javascript:alert(1)",
    "gopher://example.com/",
    "//example.com/a.png",
    "runway://short",  # 14 chars is fine; this is 14 - check below uses a 12-char one
    "data:video/mp4;base64," + B64,  # a video where an image belongs
    "data:image/png," + B64,  # not base64-encoded
    "data:image/png;base64,@@@@",
    "data:text/html;base64," + B64,
    "data:image/svg+xml;base64,",  # empty payload
]
REFUSED_IMAGE_URIS[REFUSED_IMAGE_URIS.index("runway://short")] = "runway://abc"


async def test_image_uris(videogen_server):
    # A runway:// URI reaches Runway (the simulator), which takes only one it issued: upload one first.
    uploaded = videogen_server.simulator.uploads.put("a.png", b"\x89PNG" + bytes(1000)).uri
    for uri in [uploaded if u.startswith("runway://") else u for u in ACCEPTED_IMAGE_URIS]:
        await _expect_accepted(videogen_server, _i2v(uri))
    for uri in REFUSED_IMAGE_URIS:
        await _expect_refused(videogen_server, _i2v(uri), "input_reference")


async def test_video_uris_and_reference_lists(videogen_server):
    ok = pb.GenerateRequest(model="aleph2", prompt="snow", video_uri="https://example.com/in.mp4")
    await _expect_accepted(videogen_server, ok)
    for uri in ("https://192.168.0.1/in.mp4", PNG_PREFIX + B64, "s3://bucket/in.mp4"):
        await _expect_refused(
            videogen_server, pb.GenerateRequest(model="aleph2", prompt="snow", video_uri=uri), "video_uri"
        )
    refs = [pb.MediaReference(uri="https://example.com/a.png"), pb.MediaReference(uri="http://x.example/b")]
    req = pb.GenerateRequest(
        model="gen4_turbo", prompt="x", input_reference="https://example.com/a.png", reference_images=refs
    )
    err = await expect_error(videogen_server.stub.Generate(req))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.violations


async def test_data_uri_size_limit_is_five_mib(videogen_server):
    # Exactly 5 MiB of characters is accepted all the way through Runway (the simulator) ...
    await _expect_accepted(videogen_server, _i2v(_data_uri(5 * MIB)))
    # ... one base64 quantum more is refused locally.
    await _expect_refused(videogen_server, _i2v(_data_uri(5 * MIB + 4)), "input_reference")


async def test_prompt_limits_count_utf16_units(videogen_server):
    def t2v(prompt: str) -> pb.GenerateRequest:
        return pb.GenerateRequest(model="gen4.5", prompt=prompt, seconds=5)

    await _expect_accepted(videogen_server, t2v("a" * 1000))
    await _expect_refused(videogen_server, t2v("a" * 1001), "prompt")
    # U+1F600 is one code point but two UTF-16 units: 500 fit, 501 do not.
    await _expect_accepted(videogen_server, t2v("\U0001f600" * 500))
    await _expect_refused(videogen_server, t2v("\U0001f600" * 501), "prompt")
    await _expect_accepted(videogen_server, t2v("line one\nline two\tand\r\nthree"))
    for bad in ("nul \x00 byte", "escape \x1b[31m red", "bell \x07", "del \x7f", "c1 \x85 next", "\x00" * 10):
        await _expect_refused(videogen_server, t2v(bad), "prompt")
    await _expect_refused(videogen_server, t2v("   \n\t "), "prompt")  # blank


async def test_huge_strings(videogen_server):
    stub = videogen_server.stub
    # Under the transport cap (8 MiB), a huge prompt is ours to refuse, without echoing it back.
    await _expect_refused(
        videogen_server, pb.GenerateRequest(model="gen4.5", prompt="p" * (7 * MIB)), "prompt"
    )
    # Over it, grpc refuses the message itself before any of our code runs: RESOURCE_EXHAUSTED.
    err = await expect_error(stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="p" * 10_000_000)))
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    await _expect_refused(videogen_server, pb.GenerateRequest(model="m" * 100_000, prompt="p"), "model")
    for model in ("gen4.5\x00", "../../v1/organization?", "gen4.5 ", "gen 4.5", "\u202egen4.5"):
        await _expect_refused(videogen_server, pb.GenerateRequest(model=model, prompt="p"), "model")
    for request_id in ("r" * 10_000, "key\x00", "key\n2", " key", "key\u200b"):
        req = pb.GenerateRequest(model="gen4.5", prompt="p", request_id=request_id)
        await _expect_refused(videogen_server, req, "request_id")
    await _expect_accepted(
        videogen_server, pb.GenerateRequest(model="gen4.5", prompt="p", request_id="r" * 256)
    )
    # A huge provider_options key is refused without being echoed in full.
    req = pb.GenerateRequest(model="veo3.1", prompt="p")
    req.provider_options.update({"k" * 100_000: 1})
    err = await expect_error(stub.Generate(req))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.violations
    assert len(err.message) < 2000


async def test_out_of_range_numbers_and_malformed_sizes(videogen_server):
    def t2v(**kw: object) -> pb.GenerateRequest:
        return pb.GenerateRequest(model="gen4.5", prompt="p", **kw)  # type: ignore[arg-type]

    for seconds in (-1, 0, 1, 11, 2**31 - 1, -(2**31)):
        await _expect_refused(videogen_server, t2v(seconds=seconds), "seconds")
    for seed in (-1, 2**32, 2**63 - 1, -(2**63)):
        await _expect_refused(videogen_server, t2v(seed=seed), "seed")
    await _expect_accepted(videogen_server, t2v(seed=0))
    await _expect_accepted(videogen_server, t2v(seed=2**32 - 1))
    for size in ("1280x720x1", "0x720", "1280X720", " 1280x720", "1280x720 ", "-1280x720", "1280*720",
                 "\uff11280x720", "999999x1", "1280x", "x", "1280:720", "1e3x720"):  # fmt: skip
        await _expect_refused(videogen_server, t2v(size=size), "size")
    err = await expect_error(
        videogen_server.stub.StreamContent(pb.StreamContentRequest(id=str(uuid.uuid4()), offset=-5)).read()
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT


BAD_IDS = [
    "../x",
    "../../v1/organization",
    "%2e%2e",
    "%2e%2e%2fv1%2forganization",
    "a" * 10_000,
    "",
    " ",
    "00000000-0000-0000-0000-00000000000g",
    "00000000-0000-0000-0000-000000000000/../../organization",
    "\x00",
    "..",
]


async def test_ids_never_reach_runway_unless_uuids(videogen_server):
    stub, sim = videogen_server.stub, videogen_server.simulator
    before = dict(sim.request_counts)
    for bad in BAD_IDS:
        for call in (stub.Get(pb.GetRequest(id=bad)), stub.Cancel(pb.CancelRequest(id=bad))):
            err = await expect_error(call)
            assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "id" in err.violations, bad
            assert len(err.message) < 2000
        for stream in (
            stub.WatchStatus(pb.WatchStatusRequest(id=bad)),
            stub.StreamContent(pb.StreamContentRequest(id=bad)),
        ):
            err = await expect_stream_error(stream)
            assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "id" in err.violations, bad
    assert dict(sim.request_counts) == before  # the simulator saw nothing at all
