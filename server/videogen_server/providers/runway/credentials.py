"""One Runway key as the adapter carries it: its name (shown on videos, in logs and as a metrics label) and
its secret (sent as the bearer token; never shown: not in a repr, a log line, a message or a label)."""

from __future__ import annotations

from dataclasses import dataclass, field

from videogen_server.domain.video import DEFAULT_KEY_NAME


@dataclass(frozen=True)
class RunwayCredential:
    name: str
    secret: str = field(repr=False)

    def __str__(self) -> str:
        return self.name


def default_credential(secret: str) -> RunwayCredential:
    """RUNWAYML_API_SECRET's key (and a client made with one key): named DEFAULT_KEY_NAME."""
    return RunwayCredential(DEFAULT_KEY_NAME, secret)
