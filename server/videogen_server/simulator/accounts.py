"""Several API keys, each its own Runway organization (issue 12): its credit balance, its per-model caps
(maxConcurrentGenerations: tasks beyond it are THROTTLED; maxDailyGenerations: creates beyond it in a
rolling 24 h get a 429), its usage, and its tasks (another key's task is unknown to it: 404, as another
organization's would be).

The simulator's first key (``RunwaySimulator(api_key=...)``, named "default") keeps its balance and caps in
the SimulatorConfig (``credits``, ``max_concurrency``, ``daily_limit``), as before several keys existed, so
that ``sim.config.credits = 0`` still empties it. Every other key's organization has fields of its own,
starting from the config's values when the key is added. Timing (pending/running seconds, output size) is
the config's for every key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from videogen_server.simulator.config import SimulatorConfig
from videogen_server.simulator.models import MODELS
from videogen_server.simulator.tasks import TaskStore

DEFAULT_ACCOUNT = "default"
# Per-model limits a control request may set.
_LIMIT_FIELDS = {"maxConcurrentGenerations": "concurrency", "maxDailyGenerations": "daily"}


class Organization:
    """One organization's balance and caps. `shared`: the config holds the balance and the default caps
    (the first key's); otherwise this object does. Per-model overrides are always this object's."""

    def __init__(self, config: Callable[[], SimulatorConfig], *, shared: bool) -> None:
        self._config = config
        self._shared = shared
        cfg = config()
        self._credits = cfg.credits
        self._concurrency = cfg.max_concurrency
        self._daily = cfg.daily_limit
        # model -> {"concurrency"|"daily": int | None}
        self.overrides: dict[str, dict[str, int | None]] = {}

    @property
    def credits(self) -> int:
        return self._config().credits if self._shared else self._credits

    @credits.setter
    def credits(self, value: int) -> None:
        if self._shared:
            self._config().credits = value
        else:
            self._credits = value

    @property
    def default_concurrency(self) -> int | None:
        return self._config().max_concurrency if self._shared else self._concurrency

    @property
    def default_daily(self) -> int | None:
        return self._config().daily_limit if self._shared else self._daily

    def set_defaults(self, *, concurrency: Any = ..., daily: Any = ...) -> None:
        """Set the caps of every model without an override (``...``: leave as is; None: no limit)."""
        if self._shared:
            cfg = self._config()
            if concurrency is not ...:
                cfg.max_concurrency = concurrency
            if daily is not ...:
                cfg.daily_limit = daily
            return
        if concurrency is not ...:
            self._concurrency = concurrency
        if daily is not ...:
            self._daily = daily

    def concurrency(self, model: str) -> int | None:
        limits = self.overrides.get(model, {})
        return limits.get("concurrency", self.default_concurrency)

    def daily(self, model: str) -> int | None:
        limits = self.overrides.get(model, {})
        return limits.get("daily", self.default_daily)


@dataclass(eq=False)
class Account:
    """One API key: its name (in /_sim/stats and control routes; never the secret there), its secret (the
    bearer token), its organization and its tasks."""

    name: str
    secret: str = field(repr=False)
    org: Organization
    store: TaskStore

    def organization_json(self) -> dict[str, Any]:
        """GET /v1/organization's body (runwayml's OrganizationRetrieveResponse)."""
        org = self.org
        return {
            "creditBalance": max(0, int(org.credits)),
            "tier": {
                "maxMonthlyCreditSpend": self.store.config.max_monthly_credit_spend,
                "models": {
                    m: {"maxConcurrentGenerations": org.concurrency(m), "maxDailyGenerations": org.daily(m)}
                    for m in MODELS
                },
            },
            "usage": {"models": {m: {"dailyGenerations": self.store.daily_count(m)} for m in MODELS}},
        }

    def control(self, data: Any) -> None:
        """Apply a /_sim/keys/{name} control body: ``credits``, ``maxConcurrentGenerations`` and
        ``maxDailyGenerations`` (every model; null: no limit), and ``models: {model: {those two}}``.
        ValueError names what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        unknown = set(data) - {"credits", "models", *_LIMIT_FIELDS}
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        if "credits" in data:
            self.org.credits = _count(data["credits"], "credits", nullable=False)
        defaults = {
            name: _count(data[wire], wire, nullable=True)
            for wire, name in _LIMIT_FIELDS.items()
            if wire in data
        }
        self.org.set_defaults(**defaults)
        models = data.get("models", {})
        if not isinstance(models, dict):
            raise ValueError("models must be an object")
        for model, limits in models.items():
            if not isinstance(limits, dict) or set(limits) - set(_LIMIT_FIELDS):
                raise ValueError(f"models.{model} may set only {sorted(_LIMIT_FIELDS)}")
            override = self.org.overrides.setdefault(str(model), {})
            for wire, name in _LIMIT_FIELDS.items():
                if wire in limits:
                    override[name] = _count(limits[wire], f"models.{model}.{wire}", nullable=True)

    def describe(self) -> dict[str, Any]:
        """What /_sim/keys shows of the account: never the secret."""
        return {"name": self.name, "tasks": len(self.store), **self.organization_json()}


def _count(value: Any, what: str, *, nullable: bool) -> Any:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer" + (" or null" if nullable else ""))
    return value


class Accounts:
    """The simulator's keys by secret (authentication) and by name (control, stats)."""

    def __init__(self, config: Callable[[], SimulatorConfig]) -> None:
        self._config = config
        self._by_secret: dict[str, Account] = {}
        self._by_name: dict[str, Account] = {}

    def add(self, name: str, secret: str, store: TaskStore | None = None) -> Account:
        """A new key. The first one added is the shared-config organization (see the module docstring)."""
        if name in self._by_name or secret in self._by_secret:
            raise ValueError(f"the simulator already has a key named {name!r} or with that secret")
        shared = not self._by_name
        if store is None:
            store = TaskStore(self._config())
        store.org = Organization(self._config, shared=shared)
        account = Account(name=name, secret=secret, org=store.org, store=store)
        self._by_secret[secret] = account
        self._by_name[name] = account
        return account

    def by_secret(self, secret: str) -> Account | None:
        return self._by_secret.get(secret)

    def by_name(self, name: str) -> Account | None:
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[Account]:
        return iter(list(self._by_name.values()))

    def __len__(self) -> int:
        return len(self._by_name)

    def stores(self) -> list[TaskStore]:
        return [a.store for a in self._by_name.values()]


def parse_keys(raw: str) -> dict[str, str]:
    """``--keys name:secret,name2:secret2`` -> {name: secret} (ValueError names the entry, not a secret)."""
    keys: dict[str, str] = {}
    for i, item in enumerate(p.strip() for p in raw.split(",")):
        if not item:
            continue
        name, sep, secret = item.partition(":")
        if not sep or not name.strip() or not secret.strip():
            raise ValueError(f"--keys entry {i + 1} must look like name:secret")
        keys[name.strip()] = secret.strip()
    return keys
