"""Property-based tests over validation and mapping (hypothesis), on hostile input:

- directly over catalog.build_upstream_request: every spec is either refused with InvalidArgument and at
  least one field violation, or mapped to a body that the simulator's Runway schemas accept;
- through the real gRPC API: every Generate either succeeds and the simulator accepted the POST, or is
  INVALID_ARGUMENT with a field violation and reached nobody; never INTERNAL, UNKNOWN or UPSTREAM_REJECTED.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rpc_helpers import details_of
from videogen.v1 import video_service_pb2 as pb
from videogen.v1 import video_service_pb2_grpc
from videogen_server.api.convert import generate_spec
from videogen_server.domain.generation import GenerateSpec, MediaRef
from videogen_server.errors import InvalidArgument
from videogen_server.providers.runway.catalog import CATALOG
from videogen_server.providers.runway.mapping import PATHS, build_upstream_request
from videogen_server.simulator.models import MODELS as SIMULATED
from videogen_server.simulator.models import CreateRejected, validate_create

# Current models the simulator implements (its Runway schemas are the oracle). The third-party ones it
# does not simulate (seedance2, kling...) are checked against the official SDK in test_catalog_sdk_oracle.
CURRENT = sorted(name for name, m in CATALOG.items() if m.legacy is None and name in SIMULATED)
LEGACY = sorted(name for name, m in CATALOG.items() if m.legacy is not None)
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()
MP4 = "data:video/mp4;base64," + base64.b64encode(b"\0\0\0\x18ftypmp42" + b"\0" * 16).decode()
_OPTION_KEYS = sorted({k for m in CATALOG.values() for k in m.options} | {"bogus", "ratio", "seed"})
_RATIOS = sorted(
    {r.replace(":", "x") for m in CATALOG.values() for ms in m.modes.values() for r in ms.ratios}
)

# Text without lone surrogates (protobuf strings must be valid UTF-8), control characters included.
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_hostile_text = st.one_of(
    _text,
    st.sampled_from(["\x00", "\x1b[2J", "\u202e", "\ufeff", "\U0001f600" * 501, "a" * 1001, " \n\t "]),
    st.builds(lambda n: "p" * n, st.integers(990, 1010)),
)
_uris = st.one_of(
    st.sampled_from(
        [
            "https://example.com/a.png",
            "https://cdn.example.org/v/in.mp4",
            "runway://upload/0123456789",
            PNG,
            MP4,
            "http://example.com/a.png",
            "https://10.0.0.1/a.png",
            "https://[::1]/a",
            "https://localhost/a.png",
            "https://u:p@example.com/a.png",
            "file:///etc/passwd",
            "data:image/png;base64,@@",
            "data:image/png;base64," + "A" * 12,
            "",
        ]
    ),
    st.builds(lambda s: "https://" + s, _text),
    st.builds(
        lambda s: "https://" + s + ".example.com/a.png", st.from_regex(r"[a-z0-9-]{1,10}", fullmatch=True)
    ),
    st.builds(lambda s: "data:image/png;base64," + s, _text),
)
_numbers = st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1), st.integers(-3, 12))
_seeds = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.integers(-2, 2**32 + 2))
_sizes = st.one_of(st.just(""), st.sampled_from(_RATIOS), _text, st.sampled_from(["0x0", "99999x99999"]))
_option_values = st.one_of(
    st.sampled_from(["16:9", "mp4", "prores", "422", "blurry", "", "\x00"]),
    st.integers(-5, 5),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)


def _maybe(strategy: st.SearchStrategy[Any], default: Any) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(default), strategy)


@st.composite
def hostile_specs(draw: st.DrawFn) -> GenerateSpec:
    return GenerateSpec(
        model=draw(
            st.one_of(st.sampled_from(CURRENT), st.sampled_from(LEGACY), st.sampled_from(["", " ", "\x00"]))
        ),
        prompt=draw(_maybe(_hostile_text, "")),
        input_reference=draw(_maybe(_uris, "")),
        video_uri=draw(_maybe(_uris, "")),
        seconds=draw(_numbers),
        size=draw(_sizes),
        seed=draw(_seeds),
        audio=draw(st.one_of(st.none(), st.booleans())),
        references=tuple(draw(_maybe(st.lists(st.builds(MediaRef, _uris), max_size=3), []))),
        reference_images=tuple(draw(_maybe(st.lists(st.builds(MediaRef, _uris), max_size=4), []))),
        public_figure_threshold=draw(_maybe(st.sampled_from(["auto", "low", "high", "\x00"]), "")),
        provider_options=draw(
            _maybe(
                st.dictionaries(st.one_of(st.sampled_from(_OPTION_KEYS), _text), _option_values, max_size=3),
                {},
            )
        ),
        request_id=draw(_maybe(st.one_of(_text, st.just("r" * 300)), "")),
    )


_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "prompt": _hostile_text,
    "input_reference": _uris,
    "video_uri": _uris,
    "seconds": _numbers,
    "size": _sizes,
    "seed": _seeds,
    "audio": st.one_of(st.none(), st.booleans()),
    "references": st.lists(st.builds(MediaRef, _uris), max_size=3).map(tuple),
    "reference_images": st.lists(st.builds(MediaRef, _uris), max_size=4).map(tuple),
    "public_figure_threshold": st.sampled_from(["auto", "low", "high", "\x00"]),
    "provider_options": st.dictionaries(
        st.one_of(st.sampled_from(_OPTION_KEYS), _text), _option_values, max_size=2
    ),
    "request_id": st.one_of(_text, st.just("r" * 300)),
}


@st.composite
def mutated_specs(draw: st.DrawFn) -> GenerateSpec:
    """A valid request for a current model with zero to two fields replaced by hostile values: most
    examples sit near the boundary between accepted and refused."""
    name = draw(st.sampled_from(CURRENT))
    model = CATALOG[name]
    mode = draw(st.sampled_from(sorted(model.modes)))
    fields: dict[str, Any] = {"model": name, "prompt": "a paper boat on a rainy street"}
    if mode.name == "IMAGE_TO_VIDEO":
        fields["input_reference"] = "https://example.com/a.png"
    elif mode.name == "VIDEO_TO_VIDEO":
        fields["video_uri"] = "https://example.com/in.mp4"
    for field in draw(st.lists(st.sampled_from(sorted(_FIELD_VALUES)), max_size=2, unique=True)):
        fields[field] = draw(_FIELD_VALUES[field])
    return GenerateSpec(**fields)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(hostile_specs(), mutated_specs()))
def test_catalog_accepts_only_what_runway_accepts(spec: GenerateSpec) -> None:
    try:
        request = build_upstream_request(spec)
    except InvalidArgument as exc:
        assert exc.violations and all(v.field for v in exc.violations)
        return
    endpoint = next(
        e for e in ("text_to_video", "image_to_video", "video_to_video") if PATHS[request.mode].endswith(e)
    )
    try:
        validate_create(endpoint, request.body)  # type: ignore[arg-type]
    except CreateRejected as exc:
        raise AssertionError(
            f"the catalog accepted a body Runway refuses: {request.body!r}: {exc.body}"
        ) from None


def _to_proto(spec: GenerateSpec) -> pb.GenerateRequest:
    req = pb.GenerateRequest(
        model=spec.model,
        prompt=spec.prompt,
        input_reference=spec.input_reference,
        video_uri=spec.video_uri,
        size=spec.size,
        references=[pb.MediaReference(uri=r.uri, tag=r.tag) for r in spec.references],
        reference_images=[pb.MediaReference(uri=r.uri, tag=r.tag) for r in spec.reference_images],
    )
    if spec.seconds is not None:
        req.seconds = spec.seconds
    if spec.seed is not None:
        req.seed = spec.seed
    if spec.audio is not None:
        req.audio = spec.audio
    if spec.public_figure_threshold:
        req.content_moderation.public_figure_threshold = spec.public_figure_threshold
    if spec.provider_options:
        req.provider_options.update(spec.provider_options)
    # A valid key is made unique so that no two examples share it; an invalid one stays as drawn.
    req.request_id = spec.request_id + str(uuid.uuid4()) if spec.request_id.isalnum() else spec.request_id
    return req


async def test_grpc_generate_accepts_what_runway_accepts_and_refuses_cleanly(videogen_server):
    sim = videogen_server.simulator
    outcomes = {"accepted": 0, "refused": 0}

    def posts() -> int:
        return sum(n for (method, _), n in list(sim.request_counts.items()) if method == "POST")

    def run() -> None:
        with grpc.insecure_channel(videogen_server.address) as channel:
            stub = video_service_pb2_grpc.VideoServiceStub(channel)

            @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
            @given(mutated_specs())
            def check(spec: GenerateSpec) -> None:
                req = _to_proto(spec)
                before = posts()
                try:
                    video = stub.Generate(req, timeout=30).video
                except grpc.RpcError as err:
                    details = details_of(err)  # type: ignore[arg-type]
                    assert details.code == grpc.StatusCode.INVALID_ARGUMENT, details
                    assert details.violations, details
                    assert details.reason != "UPSTREAM_REJECTED", (req, details)
                    assert posts() == before
                    outcomes["refused"] += 1
                    return
                assert video.id and posts() == before + 1
                # What the service accepted is exactly what the local mapping accepts.
                build_upstream_request(generate_spec(req))
                outcomes["accepted"] += 1

            check()

    await asyncio.to_thread(run)
    print(f"gRPC property test: {outcomes}")
    # The strategy reaches both sides of the boundary.
    assert outcomes["refused"] > 0 and outcomes["accepted"] > 0
