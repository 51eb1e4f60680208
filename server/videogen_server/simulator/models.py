"""Per-model request rules for the create endpoints (runway-api.md §5/§6) and cost estimates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from videogen_server.simulator.assets import check_uri
from videogen_server.simulator.validation import DOC_URL, MISSING, Issues, validation_failed_body

Endpoint = Literal["text_to_video", "image_to_video", "video_to_video"]
ENDPOINTS: Final[tuple[Endpoint, ...]] = ("text_to_video", "image_to_video", "video_to_video")

GEN45_T2V_RATIOS: Final = ["1280:720", "720:1280"]
GEN45_I2V_RATIOS: Final = [*GEN45_T2V_RATIOS, "1104:832", "960:960", "832:1104", "1584:672"]
GEN4_TURBO_RATIOS: Final = ["1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672"]
VEO_RATIOS: Final = ["1280:720", "720:1280", "1080:1920", "1920:1080"]
ALEPH_ASPECTS: Final = ["16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "21:9"]
GEN4_OUTPUT_FORMATS: Final = [
    "mp4",
    "prores",
    "png_sequence",
    "hdr10",
    "hlg",
    "sdr_rec709_10bit",
    "hdr_pq_12bit_master",
    "hdr_prores",
    "hdr_png_sequence",
    "hdr_exr_sequence",
]
ALEPH_OUTPUT_FORMATS: Final = ["mp4", "prores", "png_sequence", "sdr_rec709_10bit"]


class CreateRejected(Exception):
    """A create body Runway would answer with 400; ``body`` is the JSON to send."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("error", "rejected"))
        self.body = body


@dataclass(frozen=True)
class Accepted:
    model: str
    credits: int
    prompt_text: str | None


def no_matching_discriminator() -> CreateRejected:
    issue = {
        "code": "invalid_union",
        "note": "No matching discriminator",
        "path": ["model"],
        "message": "Invalid input",
    }
    return CreateRejected({"error": "Validation of body failed", "issues": [issue], "docUrl": DOC_URL})


# --- shared field groups -------------------------------------------------------------------------


def _prompt_image(issues: Issues, body: dict[str, Any], positions: list[str], max_items: int) -> None:
    value = body.get("promptImage", MISSING)
    if value is MISSING or value is None:
        issues.invalid_type(("promptImage",), "string", value)
        return
    if isinstance(value, str):
        check_uri(issues, value, ("promptImage",), "image")
        return
    if not isinstance(value, list):
        issues.invalid_type(("promptImage",), "array", value)
        return
    if not 1 <= len(value) <= max_items:
        code = "too_small" if not value else "too_big"
        issues.add(code, ("promptImage",), f"promptImage must have 1 to {max_items} items", origin="array")
        return
    seen: list[str] = []
    for i, item in enumerate(value):
        path = ("promptImage", i)
        entry = issues.obj(item, path)
        if entry is None:
            continue
        check_uri(issues, entry.get("uri"), (*path, "uri"), "image")
        position = issues.enum(entry, "position", path, positions, required=True)
        if position in seen:
            issues.add("custom", (*path, "position"), "Duplicate promptImage positions are not allowed")
        if position is not None:
            seen.append(position)
    if seen == ["last"]:
        issues.add("custom", ("promptImage",), "A last frame requires a first frame")


def _keyframes(issues: Issues, body: dict[str, Any]) -> None:
    if "keyframes" not in body:
        return
    value = body["keyframes"]
    if not isinstance(value, list):
        issues.invalid_type(("keyframes",), "array", value)
        return
    if not 1 <= len(value) <= 5:
        code = "too_small" if not value else "too_big"
        issues.add(code, ("keyframes",), "keyframes must have 1 to 5 items", origin="array")
        return
    with_range = 0
    for i, item in enumerate(value):
        path = ("keyframes", i)
        entry = issues.obj(item, path)
        if entry is None:
            continue
        check_uri(issues, entry.get("uri"), (*path, "uri"), "image")
        if "seconds" in entry:
            issues.number(entry, "seconds", path, required=True, lo=0, hi=30)
        elif "at" in entry:
            issues.number(entry, "at", path, required=True, lo=0, hi=1)
        else:
            issues.add("custom", path, "Each keyframe needs either seconds or at")
        if "range" in entry:
            with_range += 1
            rng = issues.obj(entry["range"], (*path, "range"))
            if rng is not None:
                issues.number(rng, "start_seconds", (*path, "range"), required=True, lo=0, hi=30)
                issues.number(rng, "end_seconds", (*path, "range"), required=True, lo=0, hi=30)
    if with_range not in (0, len(value)):
        issues.add("custom", ("keyframes",), "Either every keyframe has a range or none does")


# --- per model -----------------------------------------------------------------------------------

Validator = Callable[[Issues, dict[str, Any]], int]
"""Checks a body (issues recorded) and returns the estimated cost in credits."""


def _gen45(endpoint: Endpoint) -> Validator:
    ratios = GEN45_T2V_RATIOS if endpoint == "text_to_video" else GEN45_I2V_RATIOS

    def validate(issues: Issues, body: dict[str, Any]) -> int:
        issues.string(body, "promptText", (), required=True)
        issues.enum(body, "ratio", (), ratios, required=True)
        duration = issues.integer(body, "duration", (), required=True, lo=2, hi=10)
        issues.seed(body)
        issues.content_moderation(body)
        fmt = issues.enum(body, "outputFormat", (), GEN4_OUTPUT_FORMATS, required=False)
        issues.string(body, "proresProfile", (), required=False, hi=100)
        if endpoint == "image_to_video":
            _prompt_image(issues, body, ["first"], 1)
        rate = 12 if fmt in (None, "mp4") else 15
        return rate * (duration or 10)

    return validate


def _gen4_turbo(issues: Issues, body: dict[str, Any]) -> int:
    _prompt_image(issues, body, ["first"], 1)
    issues.string(body, "promptText", (), required=False)
    issues.enum(body, "ratio", (), GEN4_TURBO_RATIOS, required=True)
    duration = issues.integer(body, "duration", (), required=False, lo=2, hi=10)
    issues.seed(body)
    issues.content_moderation(body)
    return 5 * (duration or 10)


_VEO_KEYS: Final = {"model", "promptText", "ratio", "duration", "audio", "negativePrompt", "seed"}


def _veo(endpoint: Endpoint, per_second_audio: int, per_second_silent: int) -> Validator:
    def validate(issues: Issues, body: dict[str, Any]) -> int:
        allowed = _VEO_KEYS | ({"promptImage"} if endpoint == "image_to_video" else set())
        issues.strict_keys(body, allowed)
        issues.string(body, "promptText", (), required=endpoint == "text_to_video")
        issues.enum(body, "ratio", (), VEO_RATIOS, required=True)
        duration = issues.enum(body, "duration", (), [4, 6, 8], required=False)
        audio = issues.boolean(body, "audio", ())
        issues.string(body, "negativePrompt", (), required=False)
        issues.seed(body)
        if endpoint == "image_to_video":
            _prompt_image(issues, body, ["first", "last"], 2)
        rate = per_second_silent if audio is False else per_second_audio
        return rate * int(duration or 8)

    return validate


_ALEPH_KEYS: Final = {
    "model",
    "videoUri",
    "promptText",
    "ratio",
    "targetAspectRatio",
    "seed",
    "contentModeration",
    "keyframes",
    "outputFormat",
    "proresProfile",
}


def _aleph2(issues: Issues, body: dict[str, Any]) -> int:
    issues.strict_keys(body, _ALEPH_KEYS)
    if "videoUri" not in body:
        issues.invalid_type(("videoUri",), "string", MISSING)
    else:
        check_uri(issues, body["videoUri"], ("videoUri",), "video")
    issues.string(body, "promptText", (), required=False)
    issues.string(body, "ratio", (), required=False, hi=20)  # deprecated, free-form
    issues.enum(body, "targetAspectRatio", (), ALEPH_ASPECTS, required=False)
    issues.seed(body)
    issues.content_moderation(body)
    _keyframes(issues, body)
    fmt = issues.enum(body, "outputFormat", (), ALEPH_OUTPUT_FORMATS, required=False)
    issues.string(body, "proresProfile", (), required=False, hi=100)
    # The output follows the input video (<= 30 s); estimate for a 10 s clip.
    return (15 if fmt in (None, "mp4") else 18) * 10


MODELS: Final[dict[str, dict[Endpoint, Validator]]] = {
    "gen4.5": {"text_to_video": _gen45("text_to_video"), "image_to_video": _gen45("image_to_video")},
    "gen4_turbo": {"image_to_video": _gen4_turbo},
    "veo3.1": {
        "text_to_video": _veo("text_to_video", 40, 20),
        "image_to_video": _veo("image_to_video", 40, 20),
    },
    "veo3.1_fast": {
        "text_to_video": _veo("text_to_video", 15, 10),
        "image_to_video": _veo("image_to_video", 15, 10),
    },
    "aleph2": {"video_to_video": _aleph2},
}


def validate_create(endpoint: Endpoint, body: object) -> Accepted:
    """Validate a create body like Runway's Zod schemas; raise ``CreateRejected`` with the 400 body."""
    if not isinstance(body, dict):
        issues = Issues()
        issues.invalid_type((), "object", body)
        raise CreateRejected(validation_failed_body(issues.items))
    model = body.get("model")
    validator = MODELS.get(model, {}).get(endpoint) if isinstance(model, str) else None
    if validator is None:
        raise no_matching_discriminator()
    issues = Issues()
    credits = validator(issues, body)
    if issues:
        raise CreateRejected(validation_failed_body(issues.items))
    prompt = body.get("promptText")
    return Accepted(
        model=str(model), credits=credits, prompt_text=prompt if isinstance(prompt, str) else None
    )
