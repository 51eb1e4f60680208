"""Zod-like issue collection and field checks, producing Runway's 400 ``issues`` entries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

DOC_URL: Final = "https://docs.dev.runwayml.com/api"
Path = tuple[str | int, ...]
Issue = dict[str, Any]
MISSING: Final = object()


def _type_name(value: object) -> str:
    if value is MISSING:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit Runway counts prompt limits in."""
    return len(text.encode("utf-16-le")) // 2


def validation_failed_body(issues: Sequence[Issue]) -> dict[str, Any]:
    return {"error": "Validation of body failed", "issues": list(issues), "docUrl": DOC_URL}


class Issues:
    """Accumulates issues for one request body."""

    def __init__(self) -> None:
        self.items: list[Issue] = []

    def __bool__(self) -> bool:
        return bool(self.items)

    def add(self, code: str, path: Path, message: str, **extra: Any) -> None:
        self.items.append({"code": code, **extra, "path": list(path), "message": message})

    def invalid_type(self, path: Path, expected: str, value: object) -> None:
        self.add(
            "invalid_type",
            path,
            f"Invalid input: expected {expected}, received {_type_name(value)}",
            expected=expected,
        )

    # --- field checks on an object -------------------------------------------------------------

    def string(
        self, obj: Mapping[str, Any], key: str, path: Path, *, required: bool, lo: int = 1, hi: int = 1000
    ) -> str | None:
        value = obj.get(key, MISSING)
        if value is MISSING:
            if required:
                self.invalid_type((*path, key), "string", value)
            return None
        if not isinstance(value, str):
            self.invalid_type((*path, key), "string", value)
            return None
        self._bounds(utf16_len(value), lo, hi, (*path, key), "string", "string to have {op}{n} characters")
        return value

    def integer(
        self, obj: Mapping[str, Any], key: str, path: Path, *, required: bool, lo: int, hi: int
    ) -> int | None:
        value = obj.get(key, MISSING)
        if value is MISSING and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.invalid_type((*path, key), "number", value)
            return None
        if isinstance(value, float) and not value.is_integer():
            self.invalid_type((*path, key), "int", value)
            return None
        n = int(value)
        self._bounds(n, lo, hi, (*path, key), "number", "number to be {op}{n}")
        return n

    def _bounds(self, n: int, lo: int, hi: int, path: Path, origin: str, expected: str) -> None:
        """Zod's too_small / too_big issue for a length or an integer outside [lo, hi]."""
        if n < lo:
            message = "Too small: expected " + expected.format(op=">=", n=lo)
            self.add("too_small", path, message, origin=origin, minimum=lo, inclusive=True)
        elif n > hi:
            message = "Too big: expected " + expected.format(op="<=", n=hi)
            self.add("too_big", path, message, origin=origin, maximum=hi, inclusive=True)

    def number(
        self, obj: Mapping[str, Any], key: str, path: Path, *, required: bool, lo: float, hi: float
    ) -> float | None:
        value = obj.get(key, MISSING)
        if value is MISSING and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.invalid_type((*path, key), "number", value)
            return None
        if not lo <= value <= hi:
            code, bound = ("too_small", "minimum") if value < lo else ("too_big", "maximum")
            limit = lo if value < lo else hi
            self.add(
                code, (*path, key), f"Number must be between {lo} and {hi}", origin="number", **{bound: limit}
            )
            return None
        return float(value)

    def enum(
        self, obj: Mapping[str, Any], key: str, path: Path, values: Iterable[Any], *, required: bool
    ) -> Any:
        allowed = list(values)
        value = obj.get(key, MISSING)
        if value is MISSING and not required:
            return None
        if (
            value is MISSING
            or value not in allowed
            or isinstance(value, bool) != isinstance(allowed[0], bool)
        ):
            shown = "|".join(f'"{v}"' if isinstance(v, str) else str(v) for v in allowed)
            self.add(
                "invalid_value", (*path, key), f"Invalid option: expected one of {shown}", values=allowed
            )
            return None
        return value

    def boolean(self, obj: Mapping[str, Any], key: str, path: Path) -> bool | None:
        value = obj.get(key, MISSING)
        if value is MISSING:
            return None
        if not isinstance(value, bool):
            self.invalid_type((*path, key), "boolean", value)
            return None
        return value

    def seed(self, obj: Mapping[str, Any], path: Path = ()) -> None:
        self.integer(obj, "seed", path, required=False, lo=0, hi=4294967295)

    def content_moderation(self, obj: Mapping[str, Any], path: Path = ()) -> None:
        value = obj.get("contentModeration", MISSING)
        if value is MISSING:
            return
        sub = (*path, "contentModeration")
        if not isinstance(value, dict):
            self.invalid_type(sub, "object", value)
            return
        self.enum(value, "publicFigureThreshold", sub, ["auto", "low"], required=False)
        self.strict_keys(value, {"publicFigureThreshold"}, sub)

    def strict_keys(self, obj: Mapping[str, Any], allowed: Iterable[str], path: Path = ()) -> None:
        extra = sorted(k for k in obj if k not in set(allowed))
        if extra:
            keys = ", ".join(f'"{k}"' for k in extra)
            label = "key" if len(extra) == 1 else "keys"
            self.add("unrecognized_keys", path, f"Unrecognized {label}: {keys}", keys=extra)

    def obj(self, value: object, path: Path) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.invalid_type(path, "object", value if value is not None else None)
            return None
        return value
