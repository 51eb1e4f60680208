"""What a provider says about one of its models (ListModels), in the domain's terms: no gRPC, no provider
wire names. A provider maps its own catalog into these (providers/runway/describe.py); the API converts them
to the proto `Model` (api/convert.py). Frozen and made of tuples, so a description is hashable and a
conversion can be cached by value."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from videogen_server.domain.generation import GenerationMode


class ModelStatus(enum.StrEnum):
    CURRENT = "CURRENT"
    LEGACY = "LEGACY"  # a retired name: refused locally, with its replacement


class PromptNeed(enum.StrEnum):
    REQUIRED = "REQUIRED"
    OPTIONAL = "OPTIONAL"
    NOT_ACCEPTED = "NOT_ACCEPTED"


class OptionType(enum.StrEnum):
    TEXT = "TEXT"
    ENUM = "ENUM"
    NUMBER = "NUMBER"
    JSON = "JSON"  # any JSON value in the provider's shape


@dataclass(frozen=True)
class ReferencesInfo:
    """A mode accepts references of one kind; max_count None: the model states no limit of its own."""

    max_count: int | None = None


@dataclass(frozen=True)
class ModeInfo:
    mode: GenerationMode
    sizes: tuple[str, ...]  # WxH, as callers send them; () = the mode takes no size
    default_size: str  # sent when the caller sends none; "" = none is sent (no size, or the provider picks)
    prompt: PromptNeed
    reference_images: ReferencesInfo | None = None  # None: not accepted
    references: ReferencesInfo | None = None  # video references; None: not accepted


@dataclass(frozen=True)
class DurationsInfo:
    allowed_seconds: tuple[int, ...]
    default_seconds: int


@dataclass(frozen=True)
class OptionInfo:
    """A provider_options key a model accepts."""

    key: str
    type: OptionType
    allowed_values: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None  # TEXT: UTF-16 code units


@dataclass(frozen=True)
class ModelInfo:
    id: str
    status: ModelStatus
    modes: tuple[ModeInfo, ...]
    durations: DurationsInfo | None  # None: takes no duration (the output follows the input)
    audio: bool
    seed: bool
    content_moderation: bool
    prompt_max_length: int | None  # UTF-16 code units; None: not documented
    options: tuple[OptionInfo, ...] = ()  # sorted by key
    options_closed: bool = False  # True: keys not in `options` are refused
    third_party: bool = False
    replacement: str = ""  # LEGACY: the model to use instead
    status_reason: str = ""  # LEGACY: what the provider does with the name today
