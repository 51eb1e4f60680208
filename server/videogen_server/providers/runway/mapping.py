"""A GenerateSpec -> Runway's create request, and Runway's error paths -> our field names (runway-api.md
§5, design §2 "Model catalog").

- Known, current models are validated against the catalog; every violation is collected, not just the first.
- Legacy names (gen4_aleph, gen3a_turbo, veo3) are rejected locally with the replacement: Runway no
  longer accepts them, so sending them would only buy a 400.
- Unknown models are passed through with a generic mapping and no model rules: Runway's 400 decides.
- The rules that hold for every model (validation.py) apply to unknown models too: they protect us, not
  Runway. That includes provider_options: the keys set from typed fields are refused for every model.

Which wire key each typed field becomes is written once, in ``TYPED_KEYS``: the keys provider_options may
not set, the hint that names the typed field, and the translation of Runway's issue paths all derive from it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from videogen_server.domain.generation import GenerateSpec, GenerationMode, MediaRef
from videogen_server.domain.task import UpstreamRequest
from videogen_server.errors import FieldViolation, InvalidArgument
from videogen_server.providers.runway.assets import AssetKind
from videogen_server.providers.runway.catalog import (
    CATALOG,
    I2V,
    OPTION_ASSETS,
    OPTION_OWNERS,
    PUBLIC_FIGURE_THRESHOLDS,
    SEED_MAX,
    T2V,
    V2V,
    ModelSpec,
    ModeSpec,
    Need,
    OptionRule,
    RefSpec,
)
from videogen_server.providers.runway.validation import (
    MODE_WORDS,
    MODEL_ID,
    OPTION_KEY,
    SpecChecks,
    join,
    mode_names,
    to_wh,
)
from videogen_server.providers.runway.wire import render_path

# The create endpoint of each mode. Only the Runway adapter sees these paths.
PATHS: Mapping[GenerationMode, str] = MappingProxyType(
    {T2V: "/v1/text_to_video", I2V: "/v1/image_to_video", V2V: "/v1/video_to_video"}
)


@dataclass(frozen=True)
class RunwayRequest(UpstreamRequest):
    """The plan for one create (UpstreamRequest: what the record needs), with Runway's own part: the
    endpoint and the JSON body. Opaque to the services, which hand it back to RunwayProvider.create."""

    path: str  # e.g. "/v1/text_to_video"
    body: dict[str, Any]


@dataclass(frozen=True)
class TypedKey:
    """A wire key the mapping sets from one of our typed fields."""

    field: str  # our field name
    # A list: an issue inside it keeps its path (Runway's references[0].uri is our reference_images[0].uri).
    keeps_path: bool = False
    # An object: our names of its members (contentModeration.publicFigureThreshold).
    members: Mapping[str, str] = dataclasses.field(default_factory=dict)


# Every wire key set from a typed field. Never settable through provider_options, for any model (unknown
# models included: the generic mapping sets them from the typed fields too, and an option must not carry a
# URI past the asset check or a value past its field's rules).
TYPED_KEYS: Mapping[str, TypedKey] = MappingProxyType(
    {
        "model": TypedKey("model"),
        "promptText": TypedKey("prompt"),
        "promptImage": TypedKey("input_reference"),
        "videoUri": TypedKey("video_uri"),
        "promptVideo": TypedKey("video_uri"),
        "ratio": TypedKey("size"),
        "duration": TypedKey("seconds"),
        "seed": TypedKey("seed"),
        "audio": TypedKey("audio"),
        "contentModeration": TypedKey(
            "content_moderation", members={"publicFigureThreshold": "public_figure_threshold"}
        ),
        # On Runway's video models `references` are image references (SDK 5.24), i.e. our
        # reference_images; `referenceVideos` are our (video) references.
        "references": TypedKey("reference_images", keeps_path=True),
        "referenceVideos": TypedKey("references", keeps_path=True),
    }
)


# What stands in for a provider-owned video input (`own_video`) while the request is validated and mapped:
# a well-formed runway:// URI, so that every rule of the video field runs as for a caller's upload.
_OWN_VIDEO_SLOT = "runway://videogen/own-video-input"


def build_upstream_request(spec: GenerateSpec, *, own_video: str = "") -> RunwayRequest:
    """Validate ``spec`` and map it to the Runway request. Raises InvalidArgument with every violation.

    ``own_video`` (Remix): a video input Runway itself handed out (its output URL of one of our tasks, or a
    runway:// upload of ours). It is trusted input, so it skips the caller-URI checks (the simulator's
    output URLs are http on 127.0.0.1, which a caller's URI may never be): the request is validated and
    mapped with a stand-in in ``video_uri``, and the stand-in is then swapped for ``own_video`` in the body.
    The caller's URIs (references, reference images, provider_options) are checked exactly as always.
    Violations of the video input name ``model`` (a Remix has no video_uri: the model is what must take a
    video)."""
    if not own_video:
        return _build(spec)
    if spec.video_uri:
        raise InvalidArgument(
            "invalid request: video_uri: the source video is given by the service",
            [FieldViolation("video_uri", "the source video is given by the service")],
        )
    try:
        request = _build(dataclasses.replace(spec, video_uri=_OWN_VIDEO_SLOT))
    except InvalidArgument as exc:
        violations = [
            FieldViolation("model", v.description) if v.field == "video_uri" else v for v in exc.violations
        ]
        raise InvalidArgument(exc.message.replace("video_uri:", "model:"), violations) from None
    body = {k: own_video if v == _OWN_VIDEO_SLOT else v for k, v in request.body.items()}
    return dataclasses.replace(request, body=body)


def _build(spec: GenerateSpec) -> RunwayRequest:
    b = SpecChecks(spec)
    if not b.bounds():
        # Over a size bound: refused on lengths alone, before anything below scans or maps it.
        raise b.fail(spec.model if MODEL_ID.fullmatch(spec.model) else "")
    if not spec.model.strip():
        b.bad("model", "is required, e.g. " + join(n for n, m in CATALOG.items() if m.legacy is None))
    elif not MODEL_ID.fullmatch(spec.model):
        b.bad(
            "model", "must be a model id such as gen4.5: letters, digits and . _ - : /, at most 64 characters"
        )
        b.common()
        raise b.fail("")  # never echo a malformed (maybe huge) model name
    mode = b.mode()
    size = b.common()
    model = CATALOG.get(spec.model)
    if model is not None and model.legacy is not None:
        lg = model.legacy
        b.bad("model", f"{model.name} is no longer available on Runway ({lg.status}); use {lg.replacement}")
        raise b.fail(spec.model)
    if not spec.model.strip() or (model is None and mode is None):
        raise b.fail(spec.model)
    if model is None:
        assert mode is not None
        return _generic(b, mode, size)
    return _known(b, model, mode, size)


def _request(mode: GenerationMode, body: dict[str, Any], seconds: int | None, size: str) -> RunwayRequest:
    return RunwayRequest(mode=mode, seconds=seconds, size=size, path=PATHS[mode], body=body)


def _map_refs(refs: Sequence[MediaRef], ref: RefSpec, kind: AssetKind) -> list[dict[str, str]]:
    if ref.typed:
        return [{"type": kind.value, "uri": r.uri} for r in refs]
    return [{"uri": r.uri} for r in refs]


def _generic(b: SpecChecks, mode: GenerationMode, size: str) -> RunwayRequest:
    """Unknown model: the plain mapping, no model rules; Runway's 400 decides."""
    s = b.spec
    body: dict[str, Any] = {"model": s.model}
    if b.has_prompt():
        body["promptText"] = s.prompt
    if s.input_reference:
        body["promptImage"] = s.input_reference
    if s.video_uri:
        body["videoUri"] = s.video_uri
    if size:
        body["ratio"] = size.replace("x", ":")
    if s.seconds is not None:
        body["duration"] = s.seconds
    if s.seed is not None:
        body["seed"] = s.seed
    if s.audio is not None:
        body["audio"] = s.audio
    if s.public_figure_threshold:
        body["contentModeration"] = {"publicFigureThreshold": s.public_figure_threshold}
    # The shapes most Runway-hosted models use (SDK 5.24): image refs as `references: [{uri}]`,
    # video refs as `referenceVideos: [{type: "video", uri}]`.
    if s.reference_images:
        body["references"] = _map_refs(s.reference_images, RefSpec("references"), AssetKind.IMAGE)
    if s.references:
        body["referenceVideos"] = _map_refs(s.references, RefSpec("referenceVideos", True), AssetKind.VIDEO)
    _merge_options(b, body, None)
    if b.violations:
        raise b.fail(s.model)
    return _request(mode, body, s.seconds, size)


def _known(b: SpecChecks, m: ModelSpec, mode: GenerationMode | None, size: str) -> RunwayRequest:
    s = b.spec
    body: dict[str, Any] = {"model": m.name}
    ms = m.modes.get(mode) if mode is not None else None
    if mode is not None and ms is None:
        supported = mode_names(m)
        if mode is T2V:
            only = next(iter(m.modes))
            fname = "input_reference" if only is I2V else "video_uri"
            b.bad(fname, f"is required: {m.name} supports only {supported}")
        else:
            fname = "input_reference" if mode is I2V else "video_uri"
            b.bad(fname, f"{m.name} does not support {MODE_WORDS[mode]} (supports {supported})")

    # prompt
    if ms is not None:
        if ms.prompt is Need.REQUIRED and not b.has_prompt():
            b.bad("prompt", f"is required for {m.name} {MODE_WORDS[mode] if mode else ''}".rstrip())
        elif ms.prompt is Need.NONE and s.prompt:
            b.bad("prompt", f"is not accepted by {m.name}")
    b.prompt_fits(m)
    if b.has_prompt() and (ms is None or ms.prompt is not Need.NONE):
        body["promptText"] = s.prompt

    if s.input_reference:
        body["promptImage"] = s.input_reference
    if s.video_uri:
        body[m.video_field] = s.video_uri

    sent_size = _ratio(b, m, mode, ms, size, body)
    sent_seconds = _duration(b, m, body)

    if s.seed is not None:
        if not m.seed:
            b.bad("seed", f"is not accepted by {m.name}")
        elif 0 <= s.seed <= SEED_MAX:
            body["seed"] = s.seed

    if s.audio is not None:
        if m.audio:
            body["audio"] = s.audio
        elif s.audio:
            # audio=false on a silent model asks for what it does anyway: accepted, not sent.
            b.bad(
                "audio",
                f"{m.name} does not generate audio (audio: veo3.1, veo3.1_fast and some third-party models)",
            )

    if s.public_figure_threshold:
        if not m.content_moderation:
            b.bad("content_moderation.public_figure_threshold", f"is not accepted by {m.name}")
        elif s.public_figure_threshold in PUBLIC_FIGURE_THRESHOLDS:
            body["contentModeration"] = {"publicFigureThreshold": s.public_figure_threshold}

    _known_refs(b, m, mode, ms, body)
    _merge_options(b, body, m)
    if b.violations:
        raise b.fail(m.name)
    assert mode is not None  # a None mode always leaves a violation
    return _request(mode, body, sent_seconds, sent_size)


def _ratio(
    b: SpecChecks,
    m: ModelSpec,
    mode: GenerationMode | None,
    ms: ModeSpec | None,
    size: str,
    body: dict[str, Any],
) -> str:
    """size -> ratio. Returns the size sent ("" when none)."""
    if ms is None:
        return ""
    if not ms.ratios:
        if b.spec.size:
            hint = " (use provider_options.targetAspectRatio)" if "targetAspectRatio" in m.options else ""
            where = f" in {MODE_WORDS[mode]}" if mode is not None and len(m.modes) > 1 else ""
            b.bad("size", f"{m.name} takes no size{where}: the output follows the input{hint}")
        return ""
    if size:
        ratio = size.replace("x", ":")
        if ratio in ms.ratios:
            body["ratio"] = ratio
            return size
        allowed = join([to_wh(r) for r in ms.ratios])
        b.bad("size", f"must be one of {allowed} for {m.name} {MODE_WORDS[mode] if mode else ''}")
        return ""
    if ms.default_ratio is not None:
        body["ratio"] = ms.default_ratio
        return to_wh(ms.default_ratio)
    return ""


def _duration(b: SpecChecks, m: ModelSpec, body: dict[str, Any]) -> int | None:
    """seconds -> duration, always sent where the model takes one. Returns the duration sent."""
    seconds = b.spec.seconds
    sent: int | None = None
    if m.duration is None:
        if seconds is not None:
            b.bad("seconds", f"{m.name} takes no duration: the output follows the input video")
    elif seconds is not None:
        if seconds in m.duration.values:
            sent = seconds
        elif seconds > 0:
            b.bad("seconds", f"must be {m.duration.describe()} for {m.name}")
    else:
        sent = m.duration.default
    if sent is not None:
        body["duration"] = sent
    return sent


def _known_refs(
    b: SpecChecks, m: ModelSpec, mode: GenerationMode | None, ms: ModeSpec | None, body: dict[str, Any]
) -> None:
    s = b.spec
    where = f" in {MODE_WORDS[mode]}" if mode is not None else ""
    for name, refs, kind, what in (
        ("reference_images", s.reference_images, AssetKind.IMAGE, "reference images"),
        ("references", s.references, AssetKind.VIDEO, "video references"),
    ):
        if not refs or ms is None:
            continue
        ref = ms.image_refs if kind is AssetKind.IMAGE else ms.video_refs
        if ref is None:
            b.bad(name, f"{m.name} does not accept {what}{where}")
            continue
        if ref.max_items is not None and len(refs) > ref.max_items:
            b.bad(name, f"at most {ref.max_items} {what} for {m.name}")
        for i, r in enumerate(refs):
            if r.tag:
                b.bad(f"{name}[{i}].tag", f"tags are not supported by {m.name}")
        body[ref.wire_field] = _map_refs(refs, ref, kind)


def _merge_options(b: SpecChecks, body: dict[str, Any], model: ModelSpec | None) -> None:
    """Merge provider_options into the body: collisions, strict keys, known option rules."""
    for key, value in b.spec.provider_options.items():
        if not isinstance(key, str) or not OPTION_KEY.fullmatch(key):
            continue  # already refused by SpecChecks.common
        fname = f"provider_options.{key}"
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            b.bad(fname, "must be JSON (finite numbers, strings, booleans, lists, objects)")
            continue
        if key in body or key in TYPED_KEYS:
            typed = TYPED_KEYS.get(key)
            hint = f"; use the `{typed.field}` field" if typed else ""
            b.bad(fname, f"is set by the service and cannot be overridden{hint}")
            continue
        rule: OptionRule | None = None
        if model is not None:
            rule = model.options.get(key)
            if rule is None:
                owners = OPTION_OWNERS.get(key)
                if owners:
                    b.bad(fname, f"is not accepted by {model.name}; only by {join(owners)}")
                    continue
                if model.strict_keys:
                    allowed = join(sorted(model.options)) or "none"
                    b.bad(fname, f"is not accepted by {model.name} (allowed options: {allowed})")
                    continue
            elif not b.option_ok(fname, rule, value, model.name):
                continue
        if rule is not None and rule.kind in ("text", "enum"):
            # Validated as prose (Runway never fetches it, like `prompt`) or as one fixed value.
            body[key] = value
        else:
            kind = rule.asset if rule is not None and rule.asset else OPTION_ASSETS.get(key)
            if b.option_uris(fname, value, kind):
                body[key] = value


# --- Runway issue paths -> our field names ---------------------------------------------------------


def wire_path_to_field(path: Sequence[str | int]) -> str:
    """A Runway issue path (camelCase wire names) -> our proto field name. A key set from a typed field
    names that field; anything else came from provider_options."""
    parts = list(path)
    if not parts:
        return ""
    head = parts[0]
    typed = TYPED_KEYS.get(head) if isinstance(head, str) else None
    if typed is None:
        return render_path(["provider_options", *parts])
    if typed.keeps_path:
        return render_path([typed.field, *parts[1:]])
    member = parts[1] if len(parts) >= 2 and isinstance(parts[1], str) else None
    if member is not None and member in typed.members:
        return f"{typed.field}.{typed.members[member]}"
    return typed.field
