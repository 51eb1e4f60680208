"""Fault injection plan: queued faults consumed FIFO by the requests they match."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

ROUTES: Final = frozenset(
    {"create", "get_task", "delete", "output", "organization", "uploads", "storage", "any"}
)
KINDS: Final = frozenset(
    {
        "status",
        "credits",
        "reset",
        "reset_after_create",
        "slow",
        "malformed_json",
        "cut_body",
        "expired_url",
    }
)
# Kinds that only make sense on some routes: a route="any" fault of such a kind waits for one of them.
_KIND_ROUTES: Final[dict[str, frozenset[str]]] = {
    "credits": frozenset({"create"}),
    "reset_after_create": frozenset({"create"}),
    "cut_body": frozenset({"output"}),
    "expired_url": frozenset({"output"}),
    "malformed_json": frozenset({"create", "get_task", "delete", "organization", "uploads"}),
}


@dataclass
class Fault:
    """One injected misbehaviour.

    kinds: ``status`` (answer ``status`` with ``{"error": message}`` and optional ``Retry-After``; a create
    is not performed), ``credits`` (400 not-enough-credits on create), ``reset`` (drop the connection, no
    response, nothing done), ``reset_after_create`` (create the task, then drop the connection), ``slow``
    (sleep ``delay`` seconds, then answer normally), ``malformed_json`` (200 with a body that is not JSON;
    the operation itself is performed), ``cut_body`` (output: headers plus the first ``cut_after`` body
    bytes, then drop), ``expired_url`` (output: 403 as if the signed URL expired). Any other kind with a
    ``delay`` misbehaves that many seconds late.
    """

    route: str = "any"
    kind: str = "status"
    count: int = 1
    status: int = 500
    retry_after: float | None = None
    message: str | None = None
    delay: float = 0.0
    cut_after: int = 0

    def __post_init__(self) -> None:
        if self.route not in ROUTES:
            raise ValueError(f"unknown fault route {self.route!r}; expected one of {sorted(ROUTES)}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(KINDS)}")
        if self.count < 1:
            raise ValueError("fault count must be >= 1")
        if not 100 <= self.status <= 599:
            raise ValueError("fault status must be an HTTP status code")
        if self.delay < 0 or self.cut_after < 0:
            raise ValueError("fault delay and cut_after must be >= 0")

    def applies_to(self, route: str) -> bool:
        if self.route not in ("any", route):
            return False
        allowed = _KIND_ROUTES.get(self.kind)
        return allowed is None or route in allowed

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        """Build from a JSON object (snake_case keys as the dataclass; camelCase accepted too)."""
        aliases = {"retryAfter": "retry_after", "cutAfter": "cut_after"}
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            name = aliases.get(key, key)
            if name not in known:
                raise ValueError(f"unknown fault field {key!r}")
            kwargs[name] = value
        return cls(**kwargs)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class FaultPlan:
    """FIFO queue of faults; each matching request consumes one use of the first fault that applies."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, *faults: Fault) -> None:
        self._faults.extend(faults)

    def clear(self) -> None:
        self._faults.clear()

    @property
    def pending(self) -> list[Fault]:
        return list(self._faults)

    def __len__(self) -> int:
        return len(self._faults)

    def take(self, route: str) -> Fault | None:
        """Consume and return the first fault that applies to ``route``, if any."""
        for i, fault in enumerate(self._faults):
            if fault.applies_to(route):
                fault.count -= 1
                if fault.count <= 0:
                    del self._faults[i]
                return fault
        return None
