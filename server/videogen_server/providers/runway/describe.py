"""The catalog (catalog.py) as the domain's model descriptions, for ListModels: read from the same table that
validation.py and mapping.py enforce, never a second copy. Runway's W:H ratios become the WxH sizes callers
send; a mode's default ratio is what mapping.py sends when the caller sends no size."""

from __future__ import annotations

from videogen_server.domain.generation import GenerationMode
from videogen_server.domain.model_info import (
    DurationsInfo,
    ModeInfo,
    ModelInfo,
    ModelStatus,
    OptionInfo,
    OptionType,
    PromptNeed,
    ReferencesInfo,
)
from videogen_server.providers.runway.catalog import CATALOG, ModelSpec, ModeSpec, Need, OptionRule, RefSpec
from videogen_server.providers.runway.validation import to_wh

_PROMPT = {
    Need.REQUIRED: PromptNeed.REQUIRED,
    Need.OPTIONAL: PromptNeed.OPTIONAL,
    Need.NONE: PromptNeed.NOT_ACCEPTED,
}
_OPTION_TYPE = {
    "text": OptionType.TEXT,
    "enum": OptionType.ENUM,
    "number": OptionType.NUMBER,
    "any": OptionType.JSON,
}


def _refs(ref: RefSpec | None) -> ReferencesInfo | None:
    return None if ref is None else ReferencesInfo(max_count=ref.max_items)


def _mode(mode: GenerationMode, spec: ModeSpec) -> ModeInfo:
    return ModeInfo(
        mode=mode,
        sizes=tuple(to_wh(r) for r in spec.ratios),
        default_size=to_wh(spec.default_ratio) if spec.ratios and spec.default_ratio else "",
        prompt=_PROMPT[spec.prompt],
        reference_images=_refs(spec.image_refs),
        references=_refs(spec.video_refs),
    )


def _option(key: str, rule: OptionRule) -> OptionInfo:
    return OptionInfo(
        key=key,
        type=_OPTION_TYPE[rule.kind],
        allowed_values=rule.values,
        minimum=rule.minimum,
        maximum=rule.maximum,
        max_length=rule.max_utf16,
    )


def describe(spec: ModelSpec) -> ModelInfo:
    """One catalog entry as the domain's description."""
    legacy = spec.legacy
    return ModelInfo(
        id=spec.name,
        status=ModelStatus.CURRENT if legacy is None else ModelStatus.LEGACY,
        modes=tuple(_mode(mode, ms) for mode, ms in spec.modes.items()),
        durations=(
            None
            if spec.duration is None
            else DurationsInfo(tuple(sorted(spec.duration.values)), spec.duration.default)
        ),
        audio=spec.audio,
        seed=spec.seed,
        content_moderation=spec.content_moderation,
        prompt_max_length=spec.prompt_max_utf16,
        options=tuple(_option(key, spec.options[key]) for key in sorted(spec.options)),
        options_closed=spec.strict_keys,
        third_party=spec.third_party,
        replacement=legacy.replacement if legacy else "",
        status_reason=legacy.status if legacy else "",
    )


def describe_catalog() -> tuple[ModelInfo, ...]:
    """Every model in the catalog: the current ones first, then the legacy ones, each in table order."""
    specs = sorted(CATALOG.values(), key=lambda m: m.legacy is not None)  # stable: table order kept
    return tuple(describe(m) for m in specs)


MODELS: tuple[ModelInfo, ...] = describe_catalog()  # the catalog is data: described once
# The models Runway accepts today, in table order: named when Runway refuses a model id the table lacks.
CURRENT_MODEL_IDS: tuple[str, ...] = tuple(m.id for m in MODELS if m.status is ModelStatus.CURRENT)
