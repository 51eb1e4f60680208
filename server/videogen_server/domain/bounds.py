"""Hard bounds on a generation request, for every provider and model, unknown ones included.

They are checked first, on lengths alone (api/convert.py while converting the message, the provider's
validation before any per-character scan), so that one huge request costs the event loop O(bound), never
O(size). Each is set to what the most generous model Runway hosts takes (runwayml SDK 5.24 types,
runway-api.md §5.1), so that no request a provider would accept is refused here.
"""

from __future__ import annotations

# The idempotency key is stored forever and echoed in errors: bounded, printable.
REQUEST_ID_MAX = 256

# A prompt: 20,000 UTF-16 units (wan3; seedance2_5 takes 15,000, the first-party models 1,000).
PROMPT_MAX_UTF16 = 20_000
# Image references (`reference_images`, Runway's `references`): 30 (seedance2_5; others 4 to 10).
MAX_REFERENCE_IMAGES = 30
# Video references (`references`, Runway's `referenceVideos`): kling_4 states "up to 5"; the others
# bound only the combined length (15 or 30 s), so 10 leaves room for short clips and no more.
MAX_REFERENCE_VIDEOS = 10
# provider_options, a free-form Struct: Runway's richest option values are small (aleph2 keyframes:
# at most 5 items of {uri, at|seconds, range{start_seconds, end_seconds}}, 4 levels deep; kling
# providerSettings.multiPrompt[]), so 1,000 values in all (lists and objects count, like their items)
# and 8 levels of nesting leave ample room; one string may be as long as a data URI (a keyframe can
# be one), and the whole message is under grpc's 8 MiB cap anyway.
OPTIONS_MAX_VALUES = 1000
OPTIONS_MAX_DEPTH = 8

# What a request over the provider_options bounds is told.
OPTIONS_TOO_MANY = (
    f"must hold at most {OPTIONS_MAX_VALUES} values in all (every list item and object member counts)"
)
OPTIONS_TOO_DEEP = f"must nest at most {OPTIONS_MAX_DEPTH} levels deep"
