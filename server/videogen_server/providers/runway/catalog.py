"""The model catalog: one data table (``CATALOG``) that drives local validation of a GenerateSpec and its
mapping to Runway's wire format (runway-api.md §5, design §2 "Model catalog").

- Known, current models are validated locally; every violation is collected, not just the first.
- Legacy names (gen4_aleph, gen3a_turbo, veo3) are rejected locally with the replacement: Runway no
  longer accepts them, so sending them would only buy a 400.
- Unknown models are passed through with a generic mapping and no model rules: Runway's 400 decides.
- Input rules that hold for every model (asset URIs, control characters, seed range, the size format)
  are applied to unknown models too: they protect us, not Runway. That includes provider_options: the
  service-owned keys are refused for every model, and every URI anywhere in an option value passes the
  same asset check as the typed fields (``_Builder.option_uris``).
- Sizes are bounded before anything is scanned or mapped (``_Builder.bounds``): a request of any size
  costs the event loop O(limit), never O(size).

Adding a model (first- or third-party) means adding one ``ModelSpec`` to ``_MODELS``.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from videogen_server.domain.generation import GenerateSpec, GenerationMode, MediaRef
from videogen_server.domain.task import UpstreamRequest
from videogen_server.errors import FieldViolation, InvalidArgument
from videogen_server.providers.runway.assets import DATA_URI_MAX, AssetKind, check_asset_uri

T2V = GenerationMode.TEXT_TO_VIDEO
I2V = GenerationMode.IMAGE_TO_VIDEO
V2V = GenerationMode.VIDEO_TO_VIDEO

PATHS: Mapping[GenerationMode, str] = MappingProxyType(
    {T2V: "/v1/text_to_video", I2V: "/v1/image_to_video", V2V: "/v1/video_to_video"}
)
_MODE_WORDS = {T2V: "text-to-video", I2V: "image-to-video", V2V: "video-to-video"}

SEED_MAX = 4294967295
# Hostile-input bounds for the free-form identifiers. Model ids are short names (gen4.5, veo3.1_fast,
# kling2.5_turbo_pro); an unknown one is forwarded to Runway, so only a plausible id may leave. The
# idempotency key is stored forever and echoed in errors: bounded, printable.
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")
REQUEST_ID_MAX = 256
_OPTION_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")  # a Runway body key, e.g. negativePrompt

# Hard bounds for every model, unknown ones included (issue 8 item 5). Checked first, on lengths alone, so
# that nothing scans a 7.5M-character prompt or maps 400k references on the event loop. Each is what the
# most generous Runway model takes (runwayml SDK 5.24 types, runway-api.md §5.1), so no request Runway
# would accept is refused here:
# - a prompt: 20,000 UTF-16 units (wan3; seedance2_5 takes 15,000, the first-party models 1,000);
PROMPT_MAX_UTF16 = 20_000
# - image references (`reference_images`, Runway's `references`): 30 (seedance2_5; others 4 to 10);
MAX_REFERENCE_IMAGES = 30
# - video references (`references`, Runway's `referenceVideos`): kling_4 states "up to 5"; the others
#   bound only the combined length (15 or 30 s), so 10 leaves room for short clips and no more;
MAX_REFERENCE_VIDEOS = 10
# - provider_options, a free-form Struct: Runway's richest option values are small (aleph2 keyframes:
#   at most 5 items of {uri, at|seconds, range{start_seconds, end_seconds}}, 4 levels deep; kling
#   providerSettings.multiPrompt[]), so 1,000 values in all (lists and objects count, like their items)
#   and 8 levels of nesting leave ample room; one string may be as long as a data URI (a keyframe can
#   be one), and the whole message is under grpc's 8 MiB cap anyway.
OPTIONS_MAX_VALUES = 1000
OPTIONS_MAX_DEPTH = 8
OPTION_STRING_MAX = DATA_URI_MAX
DEFAULT_SIZE = "1280x720"
PUBLIC_FIGURE_THRESHOLDS = ("auto", "low")


class Need(enum.StrEnum):
    REQUIRED = "required"
    OPTIONAL = "optional"
    NONE = "none"


@dataclass(frozen=True)
class RefSpec:
    """How a model takes a list of references: the wire field and the shape of each item."""

    wire_field: str  # e.g. "references" (image refs) or "referenceVideos"
    typed: bool = False  # True: {"type": <kind>, "uri": ...}; False: {"uri": ...}
    max_items: int | None = None


@dataclass(frozen=True)
class ModeSpec:
    """What a model takes on one endpoint."""

    ratios: tuple[str, ...] = ()  # Runway's W:H values; () = the endpoint takes no ratio
    ratio_required: bool = True
    default_ratio: str | None = None  # None + ratio_required: 1280:720 if allowed, else ratios[0]
    prompt: Need = Need.REQUIRED
    image_refs: RefSpec | None = None  # our reference_images
    video_refs: RefSpec | None = None  # our references

    def __post_init__(self) -> None:
        if self.default_ratio is None and self.ratios and self.ratio_required:
            default = "1280:720" if "1280:720" in self.ratios else self.ratios[0]
            object.__setattr__(self, "default_ratio", default)


@dataclass(frozen=True)
class DurationSpec:
    values: tuple[int, ...]
    default: int

    def describe(self) -> str:
        v = self.values
        if len(v) > 3 and v == tuple(range(v[0], v[-1] + 1)):
            return f"an integer from {v[0]} to {v[-1]}"
        return "one of " + ", ".join(str(x) for x in v)


@dataclass(frozen=True)
class OptionRule:
    """A provider_options key a model is known to take. kind: "text" | "enum" | "any"."""

    kind: str = "any"
    values: tuple[str, ...] = ()
    max_utf16: int | None = None
    asset: AssetKind | None = None  # the media kind of the URIs the value carries (keyframes: images)


@dataclass(frozen=True)
class Legacy:
    replacement: str
    status: str  # what Runway does with the name today


@dataclass(frozen=True)
class ModelSpec:
    name: str
    modes: Mapping[GenerationMode, ModeSpec]
    duration: DurationSpec | None  # None: takes no duration (the output follows the input)
    prompt_max_utf16: int | None = 1000  # None: limit unknown, Runway decides
    seed: bool = True
    audio: bool = False
    content_moderation: bool = False
    video_field: str = "videoUri"  # V2V source field: "videoUri" or "promptVideo"
    strict_keys: bool = False  # Runway's schema has additionalProperties:false: reject unknown keys
    options: Mapping[str, OptionRule] = field(default_factory=dict)  # known provider_options keys
    third_party: bool = False
    legacy: Legacy | None = None
    notes: str = ""


# --- the table -------------------------------------------------------------------------------------

_GEN4_RATIOS_I2V = ("1280:720", "720:1280", "1104:832", "960:960", "832:1104", "1584:672")
_VEO_RATIOS = ("1280:720", "720:1280", "1080:1920", "1920:1080")
_GEN45_OUTPUT_FORMATS = (
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
    "hdr_exr_acescg_sequence_1_3",
    "hdr_exr_acescg_sequence_2_0",
)
_PRORES_PROFILES = ("422", "4444", "422 Proxy", "422 LT", "422 HQ", "4444 XQ")
_ALEPH2_ASPECTS = ("16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "21:9")
_VEO_OPTIONS = {"negativePrompt": OptionRule("text", max_utf16=1000)}
_SEEDANCE2_RATIOS = (
    "992:432", "864:496", "752:560", "640:640", "560:752", "496:864", "1470:630", "1280:720",
    "1112:834", "960:960", "834:1112", "720:1280", "2206:946", "1920:1080", "1664:1248", "1440:1440",
    "1248:1664", "1080:1920", "3840:1646", "3840:2160", "3840:2880", "3840:3840", "2880:3840", "2160:3840",
)  # fmt: skip


def _veo31(name: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        modes={T2V: ModeSpec(_VEO_RATIOS), I2V: ModeSpec(_VEO_RATIOS, prompt=Need.OPTIONAL)},
        # Runway documents no default; its own examples use 8 (runway-api.md §5).
        duration=DurationSpec((4, 6, 8), default=8),
        audio=True,  # Runway's default is audio on (it changes the price); sent only when set
        strict_keys=True,
        options=_VEO_OPTIONS,
    )


_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="gen4.5",
        modes={
            T2V: ModeSpec(("1280:720", "720:1280")),
            I2V: ModeSpec(_GEN4_RATIOS_I2V),
        },
        # duration is REQUIRED on the wire and Runway documents no default: we pick 5 s, the length
        # users know from the other gen4 models (and the cheapest common choice).
        duration=DurationSpec(tuple(range(2, 11)), default=5),
        content_moderation=True,
        options={
            "outputFormat": OptionRule("enum", _GEN45_OUTPUT_FORMATS),
            "proresProfile": OptionRule("enum", _PRORES_PROFILES),
        },
    ),
    ModelSpec(
        name="gen4_turbo",
        modes={I2V: ModeSpec(_GEN4_RATIOS_I2V, prompt=Need.OPTIONAL)},
        # Optional on the wire with an undocumented default: we always send it, 5 s by default.
        duration=DurationSpec(tuple(range(2, 11)), default=5),
        content_moderation=True,
    ),
    _veo31("veo3.1"),
    _veo31("veo3.1_fast"),
    ModelSpec(
        name="aleph2",
        # ratio is deprecated and free-form for aleph2: we send none. Outpainting goes through
        # provider_options.targetAspectRatio.
        modes={V2V: ModeSpec((), prompt=Need.OPTIONAL)},
        duration=None,  # the output follows the input video (<= 30 s)
        content_moderation=True,
        video_field="videoUri",
        strict_keys=True,
        options={
            "targetAspectRatio": OptionRule("enum", _ALEPH2_ASPECTS),
            "keyframes": OptionRule("any", asset=AssetKind.IMAGE),  # [{uri, at|seconds, range?}]
            "outputFormat": OptionRule("enum", ("mp4", "prores", "png_sequence", "sdr_rec709_10bit")),
            "proresProfile": OptionRule("enum", _PRORES_PROFILES),
        },
    ),
    # --- third-party models hosted by Runway (fields verified against runwayml 5.24.0 types) ---
    ModelSpec(
        name="seedance2",
        modes={
            T2V: ModeSpec(
                _SEEDANCE2_RATIOS,
                ratio_required=False,
                image_refs=RefSpec("references", max_items=9),
                video_refs=RefSpec("referenceVideos", typed=True),
            ),
            I2V: ModeSpec(_SEEDANCE2_RATIOS, ratio_required=False, prompt=Need.OPTIONAL),
            V2V: ModeSpec(
                _SEEDANCE2_RATIOS,
                ratio_required=False,
                prompt=Need.OPTIONAL,
                image_refs=RefSpec("references", max_items=9),
                video_refs=RefSpec("referenceVideos", typed=True),
            ),
        },
        # 4-15 s (runway-api.md §5.1; the SDK types say int | "auto"). No documented default: we send
        # 5 rather than "auto", which is billed at the maximum up front.
        duration=DurationSpec(tuple(range(4, 16)), default=5),
        prompt_max_utf16=3500,
        audio=True,
        video_field="promptVideo",
        strict_keys=True,
        options={"referenceAudio": OptionRule("any", asset=AssetKind.AUDIO)},  # [{type: audio, uri}]
        third_party=True,
    ),
    ModelSpec(
        name="kling2.5_turbo_pro",
        modes={
            T2V: ModeSpec(
                ("1920:1080", "1440:1440", "1080:1920", "1280:720", "720:720", "720:1280"),
                ratio_required=False,
            ),
            I2V: ModeSpec(()),  # the SDK's image_to_video type takes no ratio for this model
        },
        duration=DurationSpec((5, 10), default=5),  # SDK: "Defaults to 5"
        prompt_max_utf16=None,  # not documented
        seed=False,
        options={"cfgScale": OptionRule("any")},
        third_party=True,
    ),
    # --- legacy names users know from other gateways: rejected locally, never sent ---
    ModelSpec(
        name="gen4_aleph",
        modes={V2V: ModeSpec((), prompt=Need.REQUIRED, image_refs=RefSpec("references", typed=True))},
        duration=None,
        content_moderation=True,
        legacy=Legacy("aleph2", "removed from Runway's API spec and SDK in 5.0.0, superseded by aleph2"),
    ),
    ModelSpec(
        name="gen3a_turbo",
        modes={I2V: ModeSpec(("1280:768", "768:1280"), ratio_required=False)},
        duration=DurationSpec((5, 10), default=5),
        content_moderation=True,
        legacy=Legacy("gen4_turbo", "retired by Runway on 2026-07-30"),
    ),
    ModelSpec(
        name="veo3",
        modes={T2V: ModeSpec(_VEO_RATIOS), I2V: ModeSpec(_VEO_RATIOS, prompt=Need.OPTIONAL)},
        duration=DurationSpec((8,), default=8),
        seed=False,
        legacy=Legacy("veo3.1", "retired (Google retired Veo 3.0 in mid-2026; gone from Runway's spec)"),
    ),
)

CATALOG: Mapping[str, ModelSpec] = MappingProxyType({m.name: m for m in _MODELS})

# provider_options keys that some model in the table understands. A known model that does not list
# one of these is told which models take it (e.g. negativePrompt on gen4.5), instead of Runway
# silently ignoring it.
_OPTION_OWNERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        key: tuple(m.name for m in _MODELS if key in m.options and m.legacy is None)
        for key in sorted({k for m in _MODELS for k in m.options})
    }
)


# The media kind of the URIs in an option value, by key, whatever the model (unknown models included):
# the kind the table gives the key, when its models agree on one.
def _option_assets() -> dict[str, AssetKind]:
    out: dict[str, AssetKind] = {}
    for key in _OPTION_OWNERS:
        kinds = {k for m in _MODELS if key in m.options and (k := m.options[key].asset) is not None}
        if len(kinds) == 1:
            out[key] = kinds.pop()
    return out


_OPTION_ASSETS: Mapping[str, AssetKind] = MappingProxyType(_option_assets())

# Wire keys the mapping owns (set from typed fields): never settable through provider_options, for any
# model. Unknown models included: the generic mapping sets them from the typed fields too, and an option
# must not carry a URI (promptImage, videoUri...) past the asset check or a value past its field's rules.
_OWNED_KEYS = frozenset(
    {
        "model",
        "promptText",
        "promptImage",
        "videoUri",
        "promptVideo",
        "ratio",
        "duration",
        "seed",
        "audio",
        "contentModeration",
        "references",
        "referenceVideos",
    }
)
_OWNED_BY = {
    "promptText": "prompt",
    "promptImage": "input_reference",
    "videoUri": "video_uri",
    "promptVideo": "video_uri",
    "ratio": "size",
    "duration": "seconds",
    "seed": "seed",
    "audio": "audio",
    "contentModeration": "content_moderation",
    "references": "reference_images",
    "referenceVideos": "references",
    "model": "model",
}


# --- helpers ---------------------------------------------------------------------------------------

_SIZE = re.compile(r"([1-9][0-9]{0,4})x([1-9][0-9]{0,4})")


def utf16_len(s: str) -> int:
    """Length in UTF-16 code units, as Runway counts (an emoji outside the BMP counts 2)."""
    return len(s.encode("utf-16-le", errors="surrogatepass")) // 2


# Control characters (Unicode category Cc: C0, DEL, C1) other than \t \n \r, and lone surrogates (Cs):
# exactly the code points unicodedata.category() puts in Cc or Cs, as one regex run in C rather than a
# Python loop over every character. Unassigned code points (Cn) are allowed: this Python may predate a
# new emoji.
_BAD_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _bad_text(s: str) -> bool:
    """Control characters other than \\n \\r \\t, and lone surrogates."""
    return _BAD_TEXT.search(s) is not None


# How a URI is recognised in a free-form provider_options value (issue 8 item 4). A fetcher takes a
# value as a URI only when the whole value is one, so a string counts as a URI when it *starts* like one:
# - "<scheme>://..." for any scheme ("s3://", "gs://", "weird+scheme://");
# - "//host/..." (scheme-relative);
# - "<scheme>:..." for a scheme that means a resource without the slashes (_URI_SCHEMES: data:,
#   javascript:, file:, mailto:...), compared case-insensitively.
# Before matching, what URL parsers ignore is ignored too (WHATWG URL: leading C0 controls and spaces,
# tabs and newlines anywhere), so " https://10.0.0.5/" or "ht\ttps://..." do not slip through.
# Everything else is text: "16:9", "00:01:30", "note: calm", "Step 1: pan", "C:\\dir" start with no URI
# scheme. A recognised URI gets exactly the typed fields' check (assets.check_asset_uri): only https on
# a domain name, runway:// and base64 data: URIs pass, so "http://169.254.169.254/...", "file:///etc/passwd"
# or "https://user:secret@..." never reach Runway. The media kind is the option key's when the catalog
# knows it (_OPTION_ASSETS: keyframes are images, referenceAudio is audio); otherwise a data: URI may be
# an image, a video or an audio, under the same https/runway/data rules.
_URI_LEADING = re.compile(r"[\x00-\x20\s]*")
_TAB_NEWLINE = re.compile(r"[\t\n\r]")
_URI_START = re.compile(r"(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]{0,63}):(?P<slashes>//)?|//)")
_URI_SCHEMES = frozenset(
    {
        "http", "https", "file", "ftp", "ftps", "sftp", "data", "runway", "javascript", "vbscript",
        "gs", "s3", "blob", "filesystem", "ws", "wss", "gopher", "ldap", "dict", "smb", "tftp", "jar",
        "mailto", "about", "view-source",
    }
)  # fmt: skip


def _looks_like_uri(value: str) -> bool:
    start = _URI_LEADING.match(value).end()  # type: ignore[union-attr]  # "*" always matches
    head = value[start : start + 80]  # a scheme and "//" fit well within 80 characters
    m = _URI_START.match(_TAB_NEWLINE.sub("", head))
    if m is None:
        return False
    scheme = m.group("scheme")
    return scheme is None or m.group("slashes") is not None or scheme.lower() in _URI_SCHEMES


def _options_shape(options: Mapping[str, Any]) -> str | None:
    """What is wrong with the size of provider_options (None: within OPTIONS_MAX_*). Counts by len(),
    so a huge list or object is refused without walking it."""
    budget = OPTIONS_MAX_VALUES - len(options)
    stack: list[tuple[Any, int]] = [(v, 1) for v in options.values()] if budget >= 0 else []
    while stack and budget >= 0:
        value, depth = stack.pop()
        if isinstance(value, dict | list | tuple) and value:
            if depth >= OPTIONS_MAX_DEPTH:
                return OPTIONS_TOO_DEEP
            budget -= len(value)
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
    return OPTIONS_TOO_MANY if budget < 0 else None


OPTIONS_TOO_MANY = (
    f"must hold at most {OPTIONS_MAX_VALUES} values in all (every list item and object member counts)"
)
OPTIONS_TOO_DEEP = f"must nest at most {OPTIONS_MAX_DEPTH} levels deep"


def _key_path(key: object) -> str:
    # A nested key is named in the violation only when it is a plain name: it may be huge.
    return key if isinstance(key, str) and _OPTION_KEY.fullmatch(key) else "*"


def _to_wh(ratio: str) -> str:
    return ratio.replace(":", "x")


def _join(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values)


def _mode_names(spec: ModelSpec) -> str:
    return ", ".join(_MODE_WORDS[m] for m in spec.modes)


class _Builder:
    def __init__(self, spec: GenerateSpec) -> None:
        self.spec = spec
        self.violations: list[FieldViolation] = []

    def bad(self, field_name: str, description: str) -> None:
        self.violations.append(FieldViolation(field=field_name, description=description))

    # -- checks shared by all models ---------------------------------------------------------------

    def check_asset(self, field_name: str, uri: str, kind: AssetKind) -> None:
        problem = check_asset_uri(uri, kind)
        if problem is not None:
            self.bad(field_name, problem)

    def check_refs(self, name: str, refs: Sequence[MediaRef], kind: AssetKind) -> None:
        for i, ref in enumerate(refs):
            self.check_asset(f"{name}[{i}].uri", ref.uri, kind)

    def common(self) -> str:
        """Model-independent rules. Returns the normalized size ("" if none/malformed)."""
        s = self.spec
        if s.input_reference:
            self.check_asset("input_reference", s.input_reference, AssetKind.IMAGE)
        if s.video_uri:
            self.check_asset("video_uri", s.video_uri, AssetKind.VIDEO)
        self.check_refs("references", s.references, AssetKind.VIDEO)
        self.check_refs("reference_images", s.reference_images, AssetKind.IMAGE)
        if _bad_text(s.prompt):
            self.bad("prompt", "must not contain control characters (other than newline, CR and tab)")
        rid = s.request_id
        if len(rid) > REQUEST_ID_MAX or not rid.isprintable() or rid != rid.strip():
            self.bad(
                "request_id",
                f"must be at most {REQUEST_ID_MAX} printable characters, no leading or trailing space",
            )
        if s.seed is not None and not 0 <= s.seed <= SEED_MAX:
            self.bad("seed", f"must be an integer from 0 to {SEED_MAX}")
        if s.seconds is not None and s.seconds <= 0:
            self.bad("seconds", "must be a positive number of seconds")
        pft = s.public_figure_threshold
        if pft and pft not in PUBLIC_FIGURE_THRESHOLDS:
            self.bad(
                "content_moderation.public_figure_threshold",
                f"must be one of {_join(PUBLIC_FIGURE_THRESHOLDS)}",
            )
        size = ""
        if s.size:
            if _SIZE.fullmatch(s.size):
                size = s.size
            else:
                self.bad("size", "must be WIDTHxHEIGHT in pixels, e.g. 1280x720")
        for key in s.provider_options:
            if not isinstance(key, str) or not _OPTION_KEY.fullmatch(key):
                # Named without the key: it may be huge, and errors must stay small.
                self.bad(
                    "provider_options", "keys must be option names such as negativePrompt (at most 64 chars)"
                )
        return size

    def bounds(self) -> bool:
        """The hard size bounds, on lengths alone, before anything scans or maps the request (item 5).
        False: over a bound (the violations are added)."""
        s = self.spec
        before = len(self.violations)
        # len() first: utf16_len only ever encodes a prompt of at most PROMPT_MAX_UTF16 code points.
        if len(s.prompt) > PROMPT_MAX_UTF16 or utf16_len(s.prompt) > PROMPT_MAX_UTF16:
            self.bad(
                "prompt",
                f"must be at most {PROMPT_MAX_UTF16} characters (UTF-16 code units): "
                "no Runway model takes a longer prompt",
            )
        if len(s.request_id) > REQUEST_ID_MAX:
            self.bad(
                "request_id",
                f"must be at most {REQUEST_ID_MAX} printable characters, no leading or trailing space",
            )
        for name, refs, limit, what in (
            ("references", s.references, MAX_REFERENCE_VIDEOS, "video references"),
            ("reference_images", s.reference_images, MAX_REFERENCE_IMAGES, "reference images"),
        ):
            if len(refs) > limit:
                self.bad(name, f"at most {limit} {what} (no Runway model takes more)")
        problem = _options_shape(s.provider_options)
        if problem is not None:
            self.bad("provider_options", problem)
        return len(self.violations) == before

    def has_prompt(self) -> bool:
        return bool(self.spec.prompt.strip())

    def options(self, body: dict[str, Any], model: ModelSpec | None) -> None:
        """Merge provider_options into the body: collisions, strict keys, known option rules."""
        for key, value in self.spec.provider_options.items():
            if not isinstance(key, str) or not _OPTION_KEY.fullmatch(key):
                continue
            fname = f"provider_options.{key}"
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                self.bad(fname, "must be JSON (finite numbers, strings, booleans, lists, objects)")
                continue
            if key in body or key in _OWNED_KEYS:
                typed = _OWNED_BY.get(key)
                hint = f"; use the `{typed}` field" if typed else ""
                self.bad(fname, f"is set by the service and cannot be overridden{hint}")
                continue
            rule: OptionRule | None = None
            if model is not None:
                rule = model.options.get(key)
                if rule is None:
                    owners = _OPTION_OWNERS.get(key)
                    if owners:
                        self.bad(fname, f"is not accepted by {model.name}; only by {_join(owners)}")
                        continue
                    if model.strict_keys:
                        allowed = _join(sorted(model.options)) or "none"
                        self.bad(fname, f"is not accepted by {model.name} (allowed options: {allowed})")
                        continue
                elif not self.option_ok(fname, rule, value, model.name):
                    continue
            if rule is not None and rule.kind in ("text", "enum"):
                # Validated as prose (Runway never fetches it, like `prompt`) or as one fixed value.
                body[key] = value
            else:
                kind = rule.asset if rule is not None and rule.asset else _OPTION_ASSETS.get(key)
                if self.option_uris(fname, value, kind):
                    body[key] = value

    def option_uris(self, path: str, value: Any, kind: AssetKind | None) -> bool:
        """Every URI anywhere in an option value (nested lists and objects too) passes the asset check.
        See _looks_like_uri for what counts as a URI. Recursive: bounds() capped the depth."""
        if isinstance(value, str):
            if len(value) > OPTION_STRING_MAX:
                self.bad(path, f"must be at most {OPTION_STRING_MAX} characters")
                return False
            if _looks_like_uri(value):
                problem = check_asset_uri(value, kind)
                if problem is not None:
                    self.bad(path, problem)
                    return False
            return True
        if isinstance(value, dict):
            items = [(f"{path}.{_key_path(k)}", v) for k, v in value.items()]
        elif isinstance(value, list | tuple):
            items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
        else:
            return True
        results = [self.option_uris(p, v, kind) for p, v in items]  # every bad URI, not just the first
        return all(results)

    def option_ok(self, fname: str, rule: OptionRule, value: Any, model: str) -> bool:
        if rule.kind == "enum" and value not in rule.values:
            self.bad(fname, f"must be one of {_join(rule.values)} for {model}")
            return False
        if rule.kind == "text":
            if not isinstance(value, str) or not value.strip():
                self.bad(fname, "must be a non-empty string")
                return False
            # The length first (UTF-16 units >= code points): a huge value is refused before any scan.
            if rule.max_utf16 is not None and len(value) > rule.max_utf16:
                self.bad(fname, f"must be at most {rule.max_utf16} UTF-16 code units for {model}")
                return False
            if _bad_text(value):
                self.bad(fname, "must not contain control characters (other than newline, CR and tab)")
                return False
            if rule.max_utf16 is not None and utf16_len(value) > rule.max_utf16:
                self.bad(fname, f"must be at most {rule.max_utf16} UTF-16 code units for {model}")
                return False
        return True

    def fail(self, model: str) -> InvalidArgument:
        head = "; ".join(f"{v.field}: {v.description}" for v in self.violations[:3])
        more = f" (and {len(self.violations) - 3} more)" if len(self.violations) > 3 else ""
        name = f" for model {model!r}" if model else ""
        return InvalidArgument(f"invalid request{name}: {head}{more}", list(self.violations))


def _detect_mode(b: _Builder) -> GenerationMode | None:
    s = b.spec
    if s.video_uri and s.input_reference:
        msg = "set either input_reference (image-to-video) or video_uri (video-to-video), not both"
        b.bad("input_reference", msg)
        b.bad("video_uri", msg)
        return None
    if s.video_uri:
        return V2V
    if s.input_reference:
        return I2V
    return T2V


def _map_refs(refs: Sequence[MediaRef], ref: RefSpec, kind: AssetKind) -> list[dict[str, str]]:
    if ref.typed:
        return [{"type": kind.value, "uri": r.uri} for r in refs]
    return [{"uri": r.uri} for r in refs]


def _generic(b: _Builder, mode: GenerationMode, size: str) -> UpstreamRequest:
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
    b.options(body, None)
    if b.violations:
        raise b.fail(s.model)
    return UpstreamRequest(mode=mode, path=PATHS[mode], body=body, seconds=s.seconds, size=size)


def _known(b: _Builder, m: ModelSpec, mode: GenerationMode | None, size: str) -> UpstreamRequest:
    s = b.spec
    body: dict[str, Any] = {"model": m.name}
    ms = m.modes.get(mode) if mode is not None else None
    if mode is not None and ms is None:
        supported = _mode_names(m)
        if mode is T2V:
            only = next(iter(m.modes))
            fname = "input_reference" if only is I2V else "video_uri"
            b.bad(fname, f"is required: {m.name} supports only {supported}")
        else:
            fname = "input_reference" if mode is I2V else "video_uri"
            b.bad(fname, f"{m.name} does not support {_MODE_WORDS[mode]} (supports {supported})")

    # prompt
    if ms is not None:
        if ms.prompt is Need.REQUIRED and not b.has_prompt():
            b.bad("prompt", f"is required for {m.name} {_MODE_WORDS[mode] if mode else ''}".rstrip())
        elif ms.prompt is Need.NONE and s.prompt:
            b.bad("prompt", f"is not accepted by {m.name}")
    if b.has_prompt() and m.prompt_max_utf16 is not None and (n := utf16_len(s.prompt)) > m.prompt_max_utf16:
        b.bad("prompt", f"must be at most {m.prompt_max_utf16} UTF-16 code units for {m.name} (got {n})")
    if b.has_prompt() and (ms is None or ms.prompt is not Need.NONE):
        body["promptText"] = s.prompt

    if s.input_reference:
        body["promptImage"] = s.input_reference
    if s.video_uri:
        body[m.video_field] = s.video_uri

    # size -> ratio
    sent_size = ""
    if ms is not None:
        if not ms.ratios:
            if s.size:
                hint = " (use provider_options.targetAspectRatio)" if "targetAspectRatio" in m.options else ""
                where = f" in {_MODE_WORDS[mode]}" if mode is not None and len(m.modes) > 1 else ""
                b.bad("size", f"{m.name} takes no size{where}: the output follows the input{hint}")
        elif size:
            ratio = size.replace("x", ":")
            if ratio in ms.ratios:
                body["ratio"] = ratio
                sent_size = size
            else:
                allowed = _join([_to_wh(r) for r in ms.ratios])
                b.bad("size", f"must be one of {allowed} for {m.name} {_MODE_WORDS[mode] if mode else ''}")
        elif ms.default_ratio is not None:
            body["ratio"] = ms.default_ratio
            sent_size = _to_wh(ms.default_ratio)

    # seconds -> duration (always sent where the model takes one)
    sent_seconds: int | None = None
    if m.duration is None:
        if s.seconds is not None:
            b.bad("seconds", f"{m.name} takes no duration: the output follows the input video")
    elif s.seconds is not None:
        if s.seconds in m.duration.values:
            sent_seconds = s.seconds
        elif s.seconds > 0:
            b.bad("seconds", f"must be {m.duration.describe()} for {m.name}")
    else:
        sent_seconds = m.duration.default
    if sent_seconds is not None:
        body["duration"] = sent_seconds

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
    b.options(body, m)
    if b.violations:
        raise b.fail(m.name)
    assert mode is not None  # a None mode always leaves a violation
    return UpstreamRequest(mode=mode, path=PATHS[mode], body=body, seconds=sent_seconds, size=sent_size)


def _known_refs(
    b: _Builder, m: ModelSpec, mode: GenerationMode | None, ms: ModeSpec | None, body: dict[str, Any]
) -> None:
    s = b.spec
    where = f" in {_MODE_WORDS[mode]}" if mode is not None else ""
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


def build_upstream_request(spec: GenerateSpec) -> UpstreamRequest:
    """Validate ``spec`` and map it to the Runway request. Raises InvalidArgument with every violation."""
    b = _Builder(spec)
    if not b.bounds():
        # Over a size bound: refused on lengths alone, before anything below scans or maps it.
        raise b.fail(spec.model if _MODEL_ID.fullmatch(spec.model) else "")
    if not spec.model.strip():
        b.bad("model", "is required, e.g. " + _join(n for n, m in CATALOG.items() if m.legacy is None))
    elif not _MODEL_ID.fullmatch(spec.model):
        b.bad(
            "model", "must be a model id such as gen4.5: letters, digits and . _ - : /, at most 64 characters"
        )
        b.common()
        raise b.fail("")  # never echo a malformed (maybe huge) model name
    mode = _detect_mode(b)
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


# --- Runway issue paths -> our field names ---------------------------------------------------------

_TOP_FIELDS = {
    "promptText": "prompt",
    "promptImage": "input_reference",
    "ratio": "size",
    "duration": "seconds",
    "videoUri": "video_uri",
    "promptVideo": "video_uri",
    "seed": "seed",
    "audio": "audio",
    "model": "model",
    # On Runway's video models `references` are image references (SDK 5.24), i.e. our
    # reference_images; `referenceVideos` are our (video) references.
    "references": "reference_images",
    "referenceVideos": "references",
}


def _render(parts: Sequence[str | int]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else p
    return out


def wire_path_to_field(path: Sequence[str | int]) -> str:
    """A Runway issue path (camelCase wire names) -> our proto field name."""
    parts = list(path)
    if not parts:
        return ""
    head = parts[0]
    if isinstance(head, str):
        if head == "contentModeration":
            if len(parts) >= 2 and parts[1] == "publicFigureThreshold":
                return "content_moderation.public_figure_threshold"
            return "content_moderation"
        if head in ("promptImage", "promptText", "ratio", "duration", "videoUri", "promptVideo", "seed"):
            return _TOP_FIELDS[head]
        if head in ("audio", "model"):
            return head
        if head in ("references", "referenceVideos"):
            return _render([_TOP_FIELDS[head], *parts[1:]])
    return _render(["provider_options", *parts])
