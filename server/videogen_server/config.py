"""Configuration from the environment (design §4). The variable names are a contract: tools and tests outside
this repository rely on them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_BASE_URL = "https://api.dev.runwayml.com"


class ConfigError(ValueError):
    """A configuration value is malformed; the message names the variable, never its secret value."""


@dataclass(frozen=True)
class Config:
    # Runway key; None means: start the built-in simulator and use it.
    runway_api_secret: str | None = field(default=None, repr=False)
    runway_base_url: str = DEFAULT_BASE_URL
    listen: str = "127.0.0.1:50051"
    metrics_listen: str = "127.0.0.1:9464"
    data_dir: str = "./.videogen"
    poll_interval: float = 5.0
    # name -> key; empty means no caller authentication (local development).
    api_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Seconds that streams in flight get to finish on SIGTERM before they end with an error status.
    shutdown_grace: float = 10.0
    # StreamContent chunk size (bytes): 256 KiB default, kept within 64 KiB..1 MiB.
    chunk_size: int = 256 * 1024
    # How old a poll may be for Get of a running video to reuse it instead of asking Runway.
    freshness: float = 1.0
    # Quiet WatchStatus streams re-send the current state this often (keeps L7 proxies from cutting them).
    watch_heartbeat: float = 30.0

    @property
    def use_simulator(self) -> bool:
        return not self.runway_api_secret

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        secret = env.get("RUNWAYML_API_SECRET") or None
        return cls(
            runway_api_secret=secret,
            runway_base_url=env.get("RUNWAYML_BASE_URL") or DEFAULT_BASE_URL,
            listen=env.get("VIDEOGEN_LISTEN") or "127.0.0.1:50051",
            metrics_listen=env.get("VIDEOGEN_METRICS_LISTEN") or "127.0.0.1:9464",
            data_dir=env.get("VIDEOGEN_DATA_DIR") or "./.videogen",
            poll_interval=_positive_float(env, "VIDEOGEN_POLL_INTERVAL", 5.0),
            api_keys=parse_api_keys(env.get("VIDEOGEN_API_KEYS", "")),
            shutdown_grace=_positive_float(env, "VIDEOGEN_SHUTDOWN_GRACE", 10.0),
            chunk_size=_chunk_size(env),
        )


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def _chunk_size(env: Mapping[str, str]) -> int:
    raw = env.get("VIDEOGEN_CHUNK_SIZE")
    if not raw:
        return 256 * 1024
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"VIDEOGEN_CHUNK_SIZE must be an integer, got {raw!r}") from None
    if not 64 * 1024 <= value <= 1024 * 1024:
        raise ConfigError("VIDEOGEN_CHUNK_SIZE must be between 65536 and 1048576 bytes")
    return value


def parse_api_keys(raw: str) -> dict[str, str]:
    """`name:key,name:key` -> {name: key}. Errors never echo a key."""
    keys: dict[str, str] = {}
    for index, item in enumerate(part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, sep, key = item.partition(":")
        name, key = name.strip(), key.strip()
        if not sep or not name or not key:
            raise ConfigError(f"VIDEOGEN_API_KEYS entry {index + 1} must look like name:key")
        if name in keys:
            raise ConfigError(f"VIDEOGEN_API_KEYS names {name!r} twice")
        keys[name] = key
    return keys
