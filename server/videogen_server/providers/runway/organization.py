"""GET /v1/organization's answer (runway-api.md §2.3) as the key pool reads it: the key's credit balance,
and per model its concurrency limit, its rolling 24 h cap and how much of that cap is used. No HTTP here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from videogen_server.errors import UpstreamProtocolError


@dataclass(frozen=True)
class ModelLimits:
    """One model's tier limits and usage; None: no limit (Runway's null)."""

    max_concurrent: int | None = None
    max_daily: int | None = None
    daily_used: int = 0

    @property
    def daily_headroom(self) -> int | None:
        """Creates left in the rolling 24 h window; None: unlimited."""
        return None if self.max_daily is None else max(0, self.max_daily - self.daily_used)


@dataclass(frozen=True)
class OrganizationFacts:
    credits: int
    models: Mapping[str, ModelLimits] = field(default_factory=dict)

    def model(self, model: str) -> ModelLimits:
        """The model's limits; a model Runway does not list has none that we know of."""
        return self.models.get(model, ModelLimits())


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UpstreamProtocolError(f"Runway organization: {what} is not an object")
    return value


def _count(value: Any, what: str, *, nullable: bool) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UpstreamProtocolError(f"Runway organization: {what} is not a number")
    return int(value)


def parse_organization(data: Any) -> OrganizationFacts:
    """Runway's JSON -> OrganizationFacts; UpstreamProtocolError when its shape is not Runway's."""
    body = _object(data, "the body")
    credits = _count(body.get("creditBalance"), "creditBalance", nullable=False)
    tier_models = _object(_object(body.get("tier"), "tier").get("models", {}), "tier.models")
    usage_models = _object(_object(body.get("usage", {}), "usage").get("models", {}), "usage.models")
    models: dict[str, ModelLimits] = {}
    for name in tier_models.keys() | usage_models.keys():
        limits = _object(tier_models.get(name, {}), f"tier.models.{name}")
        usage = _object(usage_models.get(name, {}), f"usage.models.{name}")
        models[name] = ModelLimits(
            max_concurrent=_count(
                limits.get("maxConcurrentGenerations"), f"{name}.maxConcurrentGenerations", nullable=True
            ),
            max_daily=_count(limits.get("maxDailyGenerations"), f"{name}.maxDailyGenerations", nullable=True),
            daily_used=_count(usage.get("dailyGenerations", 0), f"{name}.dailyGenerations", nullable=False)
            or 0,
        )
    assert credits is not None
    return OrganizationFacts(credits=credits, models=models)
