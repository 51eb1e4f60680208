"""The model catalog: what each Runway model takes, as data (runway-api.md §5, design §2 "Model catalog").

One ``ModelSpec`` per model: its endpoints (modes), ratios, durations, prompt limits, the extras it takes
and the provider_options keys it knows; legacy names carry their replacement. Plus the hard input bounds
that hold for every model, unknown ones included. No logic here beyond deriving lookups from the table:
``validation.py`` checks a GenerateSpec against it and ``mapping.py`` turns the spec into Runway's body.

Adding a model (first- or third-party) means adding one ``ModelSpec`` to ``_MODELS``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from videogen_server.domain.generation import GenerationMode
from videogen_server.providers.runway.assets import DATA_URI_MAX, AssetKind

T2V = GenerationMode.TEXT_TO_VIDEO
I2V = GenerationMode.IMAGE_TO_VIDEO
V2V = GenerationMode.VIDEO_TO_VIDEO

SEED_MAX = 4294967295
# One string in provider_options may be as long as a data URI (an aleph2 keyframe can be one); the other
# hard bounds on a request hold for every provider and live in domain/bounds.py.
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
    """A provider_options key a model is known to take. kind: "text" | "enum" | "number" | "any"."""

    kind: str = "any"
    values: tuple[str, ...] = ()
    max_utf16: int | None = None
    minimum: float | None = None  # "number": the inclusive range, where Runway documents one
    maximum: float | None = None
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
        # SDK: a float; "0 gives the model maximum creative freedom, 1 makes it follow the prompt most
        # strictly".
        options={"cfgScale": OptionRule("number", minimum=0.0, maximum=1.0)},
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
OPTION_OWNERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        key: tuple(m.name for m in _MODELS if key in m.options and m.legacy is None)
        for key in sorted({k for m in _MODELS for k in m.options})
    }
)


# The media kind of the URIs in an option value, by key, whatever the model (unknown models included):
# the kind the table gives the key, when its models agree on one.
def _option_assets() -> dict[str, AssetKind]:
    out: dict[str, AssetKind] = {}
    for key in OPTION_OWNERS:
        kinds = {k for m in _MODELS if key in m.options and (k := m.options[key].asset) is not None}
        if len(kinds) == 1:
            out[key] = kinds.pop()
    return out


OPTION_ASSETS: Mapping[str, AssetKind] = MappingProxyType(_option_assets())
