"""The bodies we build are checked against the official SDK's per-model TypedDicts (runwayml 5.24.0):
keys (by wire alias), required keys, and Literal values (ratio, duration, enums), recursively for nested
TypedDicts (contentModeration). The SDK is a test oracle only; service code never imports it."""

from __future__ import annotations

import typing
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runwayml.types import (
    image_to_video_create_params as i2v,
)
from runwayml.types import (
    text_to_video_create_params as t2v,
)
from runwayml.types import (
    video_to_video_create_params as v2v,
)
from videogen_server.domain.generation import GenerateSpec, GenerationMode, MediaRef
from videogen_server.errors import InvalidArgument
from videogen_server.providers.runway.catalog import CATALOG
from videogen_server.providers.runway.mapping import build_upstream_request

MODULES: dict[GenerationMode, ModuleType] = {
    GenerationMode.TEXT_TO_VIDEO: t2v,
    GenerationMode.IMAGE_TO_VIDEO: i2v,
    GenerationMode.VIDEO_TO_VIDEO: v2v,
}
UNIONS = {
    GenerationMode.TEXT_TO_VIDEO: t2v.TextToVideoCreateParams,
    GenerationMode.IMAGE_TO_VIDEO: i2v.ImageToVideoCreateParams,
    GenerationMode.VIDEO_TO_VIDEO: v2v.VideoToVideoCreateParams,
}
CURRENT = [name for name, m in CATALOG.items() if m.legacy is None]


def sdk_class(mode: GenerationMode, model: str) -> type | None:
    """The SDK TypedDict whose `model` Literal is `model` on that endpoint."""
    for cls in typing.get_args(UNIONS[mode]):
        hints = typing.get_type_hints(cls, include_extras=True)
        if model in typing.get_args(_strip(hints["model"])[0]):
            return typing.cast(type, cls)
    return None


def _strip(tp: Any) -> tuple[Any, bool, str | None]:
    """-> (bare type, required?, wire alias)."""
    required = False
    alias = None
    while True:
        origin = typing.get_origin(tp)
        if origin in (typing.Required, typing.NotRequired):
            required = origin is typing.Required
            tp = typing.get_args(tp)[0]
        elif origin is typing.Annotated:
            for meta in tp.__metadata__:
                alias = getattr(meta, "alias", None) or alias
            tp = typing.get_args(tp)[0]
        else:
            return tp, required, alias


def schema(cls: type) -> dict[str, tuple[Any, bool]]:
    """wire key -> (type, required). (__required_keys__ is empty under the SDK's postponed annotations,
    so Required[] is read from the hints.)"""
    out = {}
    for name, tp in typing.get_type_hints(cls, include_extras=True).items():
        bare, required, alias = _strip(tp)
        out[alias or name] = (bare, required or name in getattr(cls, "__required_keys__", ()))
    return out


def _value_ok(tp: Any, value: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return value in typing.get_args(tp) and type(value) in {type(a) for a in typing.get_args(tp)}
    if origin is typing.Union:
        return any(_value_ok(a, value) for a in typing.get_args(tp))
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is bool:
        return isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if typing.is_typeddict(tp):
        return isinstance(value, dict) and not oracle_problems(tp, value)
    return True  # Iterables etc.: shapes checked elsewhere


def oracle_problems(cls: type, body: dict[str, Any], passthrough: frozenset[str] = frozenset()) -> list[str]:
    sch = schema(cls)
    problems = [f"missing required {k}" for k, (_, req) in sch.items() if req and k not in body]
    for key, value in body.items():
        if key not in sch:
            if key not in passthrough:
                problems.append(f"unknown key {key}")
        elif not _value_ok(sch[key][0], value):
            problems.append(f"bad value {key}={value!r}")
    return problems


def test_every_current_model_mode_exists_in_sdk() -> None:
    for name in CURRENT:
        for mode in CATALOG[name].modes:
            assert sdk_class(mode, name) is not None, (name, mode)
        for mode in set(GenerationMode) - set(CATALOG[name].modes):
            assert sdk_class(mode, name) is None, f"{name} supports {mode} in the SDK but not in our table"


def test_legacy_models_are_gone_from_sdk() -> None:
    for name, m in CATALOG.items():
        if m.legacy is not None:
            assert all(sdk_class(mode, name) is None for mode in GenerationMode), name


@pytest.mark.parametrize("name", CURRENT)
def test_ratio_and_duration_sets_match_sdk(name: str) -> None:
    spec = CATALOG[name]
    for mode, ms in spec.modes.items():
        cls = sdk_class(mode, name)
        assert cls is not None
        sch = schema(cls)
        if ms.ratios:
            assert set(ms.ratios) == set(typing.get_args(sch["ratio"][0])), (name, mode)
            assert ms.ratio_required == sch["ratio"][1]
        else:
            assert "ratio" not in sch or sch["ratio"][0] is str  # aleph2: deprecated free-form
        if spec.duration is None:
            assert "duration" not in sch
        else:
            dur = sch["duration"][0]
            lits = [a for a in typing.get_args(dur) if typing.get_origin(a) is typing.Literal]
            if typing.get_origin(dur) is typing.Literal:
                assert set(spec.duration.values) == set(typing.get_args(dur))
            else:
                assert int in typing.get_args(dur) or dur is int or lits
        if spec.video_field and mode is GenerationMode.VIDEO_TO_VIDEO:
            assert spec.video_field in sch


IMG = "https://example.com/a.png"
VID = "https://example.com/a.mp4"


def _inputs(mode: GenerationMode) -> dict[str, Any]:
    return {
        GenerationMode.TEXT_TO_VIDEO: {},
        GenerationMode.IMAGE_TO_VIDEO: {"input_reference": IMG},
        GenerationMode.VIDEO_TO_VIDEO: {"video_uri": VID},
    }[mode]


def _check(spec: GenerateSpec) -> None:
    req = build_upstream_request(spec)
    cls = sdk_class(req.mode, spec.model)
    assert cls is not None
    m = CATALOG[spec.model]
    passthrough = frozenset() if m.strict_keys else frozenset(spec.provider_options)
    assert oracle_problems(cls, req.body, passthrough) == [], req.body
    if "duration" in schema(cls):
        assert "duration" in req.body  # always sent where the model takes one
    assert req.seconds == req.body.get("duration")
    assert req.size == req.body.get("ratio", "").replace(":", "x")


@pytest.mark.parametrize("name", CURRENT)
def test_defaults_and_every_ratio_duration_satisfy_sdk(name: str) -> None:
    m = CATALOG[name]
    for mode, ms in m.modes.items():
        base = GenerateSpec(model=name, prompt="a calm lake", **_inputs(mode))
        _check(base)
        for ratio in ms.ratios:
            for seconds in m.duration.values if m.duration else (None,):
                _check(GenerateSpec(**{**base.__dict__, "size": ratio.replace(":", "x"), "seconds": seconds}))


@pytest.mark.parametrize("name", CURRENT)
def test_full_featured_bodies_satisfy_sdk(name: str) -> None:
    m = CATALOG[name]
    for mode, ms in m.modes.items():
        kw: dict[str, Any] = {"model": name, "prompt": "p", **_inputs(mode)}
        if m.seed:
            kw["seed"] = 42
        if m.audio:
            kw["audio"] = True
        if m.content_moderation:
            kw["public_figure_threshold"] = "low"
        if ms.image_refs:
            kw["reference_images"] = (MediaRef(IMG),)
        if ms.video_refs:
            kw["references"] = (MediaRef(VID),)
        opts = {}
        for key, rule in m.options.items():
            if rule.kind == "enum":
                opts[key] = rule.values[0]
            elif rule.kind == "text":
                opts[key] = "no dogs"
        kw["provider_options"] = opts
        _check(GenerateSpec(**kw))


# --- property test ---------------------------------------------------------------------------------

_OPTION_KEYS = sorted({k for m in CATALOG.values() for k in m.options} | {"bogus", "ratio", "duration"})
_ALL_RATIOS = sorted({r for m in CATALOG.values() for ms in m.modes.values() for r in ms.ratios})
_URIS = st.sampled_from(
    [
        IMG,
        VID,
        "runway://abcdefghijklmn",
        "data:image/png;base64,AAAA",
        "http://x.example/a",
        "https://1.2.3.4/a",
    ]
)


@st.composite
def specs(draw: st.DrawFn) -> GenerateSpec:
    def maybe(strategy: st.SearchStrategy[Any], default: Any) -> Any:
        return draw(st.one_of(st.just(default), strategy))

    return GenerateSpec(
        model=draw(st.sampled_from(CURRENT)),
        prompt=maybe(st.text(max_size=1100), ""),
        input_reference=maybe(_URIS, ""),
        video_uri=maybe(_URIS, ""),
        seconds=maybe(st.integers(-5, 40), None),
        size=maybe(
            st.one_of(st.sampled_from([r.replace(":", "x") for r in _ALL_RATIOS]), st.text(max_size=12)), ""
        ),
        seed=maybe(st.integers(-(2**40), 2**40), None),
        audio=maybe(st.booleans(), None),
        references=maybe(st.lists(st.builds(MediaRef, _URIS), max_size=3).map(tuple), ()),
        reference_images=maybe(st.lists(st.builds(MediaRef, _URIS), max_size=10).map(tuple), ()),
        public_figure_threshold=maybe(st.sampled_from(["auto", "low", "high"]), ""),
        provider_options=maybe(
            st.dictionaries(
                st.sampled_from(_OPTION_KEYS),
                st.one_of(
                    st.sampled_from(["16:9", "mp4", "prores", "422", "x"]), st.integers(), st.text(max_size=5)
                ),
                max_size=3,
            ),
            {},
        ),
    )


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_property_valid_body_or_invalid_argument(spec: GenerateSpec) -> None:
    try:
        req = build_upstream_request(spec)
    except InvalidArgument as exc:
        assert exc.violations
        return
    cls = sdk_class(req.mode, spec.model)
    assert cls is not None
    passthrough = frozenset() if CATALOG[spec.model].strict_keys else frozenset(spec.provider_options)
    assert oracle_problems(cls, req.body, passthrough) == [], req.body
    prompt = req.body.get("promptText")
    if prompt is not None:
        assert (
            1
            <= len(prompt.encode("utf-16-le", "surrogatepass")) // 2
            <= (CATALOG[spec.model].prompt_max_utf16 or 10**9)
        )


def test_oracle_itself_sees_required_keys_and_literals() -> None:
    cls = sdk_class(GenerationMode.TEXT_TO_VIDEO, "gen4.5")
    assert cls is not None
    sch = schema(cls)
    assert {k for k, (_, req) in sch.items() if req} == {"model", "promptText", "ratio", "duration"}
    assert oracle_problems(cls, {"model": "gen4.5", "promptText": "p", "ratio": "960:960", "duration": 5})
    assert oracle_problems(cls, {"model": "gen4.5", "promptText": "p", "ratio": "1280:720"})
    assert oracle_problems(
        cls, {"model": "gen4.5", "promptText": "p", "ratio": "1280:720", "duration": 5, "x": 1}
    )
