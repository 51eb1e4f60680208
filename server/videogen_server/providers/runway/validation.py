"""Checks of a GenerateSpec against the catalog: the rules that hold for every model (asset URIs, control
characters, seed range, the size format, the hard size bounds) and the per-option rules. ``mapping.py``
runs them while it builds Runway's body; every violation is collected, not just the first.

- Sizes are bounded before anything is scanned or mapped (``SpecChecks.bounds``): a request of any size
  costs the event loop O(limit), never O(size).
- Every URI anywhere in a provider_options value passes the same asset check as the typed fields
  (``SpecChecks.option_uris``), for unknown models too: these rules protect us, not Runway.
- All character scans (``_bad_text``, ``utf16_len``) and asset checks run from this module, so that a test
  can count them in one place (tests/unit/test_request_bounds.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from videogen_server.domain.bounds import (
    MAX_REFERENCE_IMAGES,
    MAX_REFERENCE_VIDEOS,
    OPTIONS_MAX_DEPTH,
    OPTIONS_MAX_VALUES,
    OPTIONS_TOO_DEEP,
    OPTIONS_TOO_MANY,
    PROMPT_MAX_UTF16,
    REQUEST_ID_MAX,
)
from videogen_server.domain.generation import GenerateSpec, GenerationMode, MediaRef
from videogen_server.errors import FieldViolation, InvalidArgument
from videogen_server.providers.runway.assets import AssetKind, check_asset_uri
from videogen_server.providers.runway.catalog import (
    I2V,
    OPTION_STRING_MAX,
    PUBLIC_FIGURE_THRESHOLDS,
    SEED_MAX,
    T2V,
    V2V,
    ModelSpec,
    OptionRule,
)

# Model ids are short names (gen4.5, veo3.1_fast, kling2.5_turbo_pro); an unknown one is forwarded to
# Runway, so only a plausible id may leave.
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")
OPTION_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")  # a Runway body key, e.g. negativePrompt
MODE_WORDS = {T2V: "text-to-video", I2V: "image-to-video", V2V: "video-to-video"}

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
# knows it (OPTION_ASSETS: keyframes are images, referenceAudio is audio); otherwise a data: URI may be
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


def _key_path(key: object) -> str:
    # A nested key is named in the violation only when it is a plain name: it may be huge.
    return key if isinstance(key, str) and OPTION_KEY.fullmatch(key) else "*"


def to_wh(ratio: str) -> str:
    """Runway's W:H ratio as our WxH size."""
    return ratio.replace(":", "x")


def join(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values)


def mode_names(spec: ModelSpec) -> str:
    return ", ".join(MODE_WORDS[m] for m in spec.modes)


class SpecChecks:
    """The violations found in one GenerateSpec so far, and the checks that add to them."""

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
                f"must be one of {join(PUBLIC_FIGURE_THRESHOLDS)}",
            )
        size = ""
        if s.size:
            if _SIZE.fullmatch(s.size):
                size = s.size
            else:
                self.bad("size", "must be WIDTHxHEIGHT in pixels, e.g. 1280x720")
        for key in s.provider_options:
            if not isinstance(key, str) or not OPTION_KEY.fullmatch(key):
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

    def prompt_fits(self, model: ModelSpec) -> None:
        """The model's own prompt limit (bounds() already capped the length at PROMPT_MAX_UTF16)."""
        limit = model.prompt_max_utf16
        if self.has_prompt() and limit is not None and (n := utf16_len(self.spec.prompt)) > limit:
            self.bad("prompt", f"must be at most {limit} UTF-16 code units for {model.name} (got {n})")

    def mode(self) -> GenerationMode | None:
        """The endpoint the typed inputs ask for (None: contradictory inputs, the violations added)."""
        s = self.spec
        if s.video_uri and s.input_reference:
            msg = "set either input_reference (image-to-video) or video_uri (video-to-video), not both"
            self.bad("input_reference", msg)
            self.bad("video_uri", msg)
            return None
        if s.video_uri:
            return V2V
        if s.input_reference:
            return I2V
        return T2V

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
            self.bad(fname, f"must be one of {join(rule.values)} for {model}")
            return False
        if rule.kind == "number":
            # JSON numbers only (a bool is not one, though Python says so); NaN/inf never reach here.
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.bad(fname, f"must be a number for {model}")
                return False
            low = float("-inf") if rule.minimum is None else rule.minimum
            high = float("inf") if rule.maximum is None else rule.maximum
            if not low <= value <= high:
                self.bad(fname, f"must be a number from {low:g} to {high:g} for {model}")
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
