"""Issue 8 item 5, on the conversion and the catalog alone: sizes are checked before any per-item or
per-character work, so that a large request costs O(1) (or O(limit)) on the event loop, not O(size)."""

from __future__ import annotations

import sys
import unicodedata
from typing import Any

import pytest
from videogen.v1 import video_service_pb2 as pb
from videogen_server.api import convert
from videogen_server.domain.generation import GenerateSpec, MediaRef
from videogen_server.errors import InvalidArgument
from videogen_server.providers.runway import assets, validation
from videogen_server.providers.runway.mapping import build_upstream_request

PROMPT_MAX = 20_000


def _violations(fn: Any, *args: Any) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as info:
        fn(*args)
    return {v.field: v.description for v in info.value.violations}


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of every string the catalog scans character by character or re-encodes."""
    seen: list[int] = []
    bad_text, utf16_len = validation._bad_text, validation.utf16_len

    def spy_bad_text(s: str) -> bool:
        seen.append(len(s))
        return bad_text(s)

    def spy_utf16_len(s: str) -> int:
        seen.append(len(s))
        return utf16_len(s)

    monkeypatch.setattr(validation, "_bad_text", spy_bad_text)
    monkeypatch.setattr(validation, "utf16_len", spy_utf16_len)
    return seen


@pytest.mark.parametrize("model", ["gen4.5", "foo", "seedance2"])
def test_a_huge_prompt_is_refused_before_any_scan(model: str, scans: list[int]) -> None:
    v = _violations(build_upstream_request, GenerateSpec(model=model, prompt="\x00" * 7_500_000))
    assert f"at most {PROMPT_MAX}" in v["prompt"], v
    assert all(n <= PROMPT_MAX for n in scans), max(scans)


def test_a_prompt_at_the_bound_is_scanned_and_passes(scans: list[int]) -> None:
    assert build_upstream_request(GenerateSpec(model="foo", prompt="p" * PROMPT_MAX)).body["promptText"]
    v = _violations(build_upstream_request, GenerateSpec(model="foo", prompt="p" * (PROMPT_MAX + 1)))
    assert f"at most {PROMPT_MAX}" in v["prompt"]
    # Control characters are still found, however the prompt is scanned.
    for bad in ("a\x00b", "\x1b[2J", "x\x85", "\ud800"):
        assert "prompt" in _violations(build_upstream_request, GenerateSpec(model="foo", prompt=bad))


def test_a_huge_text_option_is_refused_before_any_scan(scans: list[int]) -> None:
    spec = GenerateSpec(model="veo3.1", prompt="p", provider_options={"negativePrompt": "\x00" * 7_000_000})
    v = _violations(build_upstream_request, spec)
    assert "at most 1000" in v["provider_options.negativePrompt"]
    assert all(n <= PROMPT_MAX for n in scans), max(scans)


def test_a_huge_request_id_is_refused_by_its_length() -> None:
    v = _violations(build_upstream_request, GenerateSpec(model="foo", prompt="p", request_id="\x00" * 10**6))
    assert "at most 256" in v["request_id"]


def test_reference_counts_are_bounded_in_the_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    check = validation.check_asset_uri

    def spy(uri: str, kind: Any) -> str | None:
        checked.append(uri)
        return check(uri, kind)

    monkeypatch.setattr(validation, "check_asset_uri", spy)
    refs = tuple(MediaRef("https://example.com/a.png") for _ in range(10_000))
    spec = GenerateSpec(model="foo", prompt="p", references=refs, reference_images=refs)
    v = _violations(build_upstream_request, spec)
    assert "at most 10" in v["references"] and "at most 30" in v["reference_images"], v
    assert not checked  # no per-reference work on a list that is refused by its count


def test_conversion_counts_references_before_building_them(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []

    class CountingRef(MediaRef):
        def __init__(self, uri: str, tag: str = "") -> None:
            built.append(uri)
            super().__init__(uri, tag)

    monkeypatch.setattr(convert, "MediaRef", CountingRef)
    req = pb.GenerateRequest(model="foo", prompt="p")
    req.reference_images.extend(pb.MediaReference(uri="x") for _ in range(400_000))
    v = _violations(convert.generate_spec, req)
    assert "at most 30" in v["reference_images"], v
    assert not built
    req = pb.GenerateRequest(model="foo", prompt="p")
    req.references.extend(pb.MediaReference(uri="x") for _ in range(11))
    assert "at most 10" in _violations(convert.generate_spec, req)["references"]
    req = pb.GenerateRequest(model="foo", prompt="p")
    req.references.extend(pb.MediaReference(uri="x") for _ in range(10))
    req.reference_images.extend(pb.MediaReference(uri="y") for _ in range(30))
    spec = convert.generate_spec(req)
    assert len(spec.references) == 10 and len(spec.reference_images) == 30


def test_conversion_bounds_provider_options() -> None:
    req = pb.GenerateRequest(model="foo", prompt="p")
    req.provider_options.update({"many": list(range(200_000))})
    assert "values" in _violations(convert.generate_spec, req)["provider_options"]
    nested: dict[str, Any] = {"leaf": 1}
    for _ in range(20):
        nested = {"n": nested}
    req = pb.GenerateRequest(model="foo", prompt="p")
    req.provider_options.update({"deep": nested})
    assert "levels" in _violations(convert.generate_spec, req)["provider_options"]


def test_conversion_of_provider_options_is_unchanged() -> None:
    # The same values json_format gave (the fingerprints of stored requests depend on them).
    opts = {
        "keyframes": [{"uri": "https://example.com/k.png", "at": 0.5, "range": {"start_seconds": 1.0}}],
        "n": 5.0,
        "f": 2.5,
        "big": 2.0**60,
        "b": True,
        "z": None,
        "s": "text",
        "l": [],
        "o": {},
    }
    req = pb.GenerateRequest(model="foo", prompt="p")
    req.provider_options.update(opts)
    got = convert.generate_spec(req).provider_options
    assert got == {**opts, "n": 5, "keyframes": [{**opts["keyframes"][0], "range": {"start_seconds": 1}}]}
    assert type(got["n"]) is int and type(got["f"]) is float and type(got["big"]) is float
    assert convert.generate_spec(pb.GenerateRequest(model="foo")).provider_options == {}


def test_option_shape_is_bounded_in_the_catalog_too() -> None:
    # A GenerateSpec built elsewhere than from the proto gets the same bounds.
    spec = GenerateSpec(model="foo", prompt="p", provider_options={"many": list(range(5_000))})
    assert "values" in _violations(build_upstream_request, spec)["provider_options"]
    nested: Any = 1
    for _ in range(20):
        nested = [nested]
    spec = GenerateSpec(model="foo", prompt="p", provider_options={"deep": nested})
    assert "levels" in _violations(build_upstream_request, spec)["provider_options"]


def test_the_c_speed_scans_refuse_exactly_what_the_per_character_loops_did() -> None:
    # The loops that stalled the event loop were replaced by a regex (validation._bad_text) and by
    # str.isprintable (assets._has_forbidden_chars); over every code point they decide the same.
    for cp in range(sys.maxunicode + 1):
        ch = chr(cp)
        category = unicodedata.category(ch)
        assert validation._bad_text(ch) is (ch not in "\n\r\t" and category in ("Cc", "Cs")), hex(cp)
        assert assets._has_forbidden_chars(ch) is (ch.isspace() or category.startswith("C")), hex(cp)
