"""Caller authentication: who is calling, from `authorization: Bearer <key>` metadata.

Keys come from VIDEOGEN_API_KEYS (config.py); without any, every call is the one anonymous caller "".
Health and reflection (`OPEN_METHOD_PREFIXES`) need no credentials: probes and tools call them bare.

The error-mapping interceptor (api/error_mapping.py) enters every other call's caller with `enter_caller`
before the handler runs, so a refusal is an `errors.Unauthenticated`, mapped to its status (api/status.py)
like every domain error; handlers read the caller's name from `current_caller`.
"""

from __future__ import annotations

import contextvars
import hmac
from collections.abc import Mapping
from typing import Any

from videogen_server import errors

current_caller: contextvars.ContextVar[str] = contextvars.ContextVar("current_caller", default="")

# The infrastructure services' methods: open without credentials, and quiet in the access log (probes call
# them every few seconds).
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def is_open(method: str) -> bool:
    return method.startswith(OPEN_METHOD_PREFIXES)


class Authenticator:
    """Maps a bearer key to the caller's name, comparing in constant time. No keys: everyone is ""."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._keys = [(name, key.encode()) for name, key in keys.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def caller(self, metadata: Any) -> str | None:
        """The caller's name, or None when the metadata carries no configured key."""
        if not self._keys:
            return ""
        presented = b""
        for item in metadata or ():
            key, value = item[0], item[1]
            if key == "authorization":
                text = value.decode() if isinstance(value, bytes) else str(value)
                scheme, _, token = text.partition(" ")
                if scheme.lower() == "bearer":
                    presented = token.strip().encode()
                break
        found: str | None = None
        for name, key in self._keys:
            # Compare against every key, without stopping early, so timing reveals nothing.
            if hmac.compare_digest(presented, key) and found is None:
                found = name
        return found


def enter_caller(caller: str | None) -> contextvars.Token[str]:
    """Make `caller` (what `Authenticator.caller` found) the current caller of this call. None, a call that
    did not authenticate, raises `errors.Unauthenticated` instead."""
    if caller is None:
        raise errors.Unauthenticated("send a valid key as 'authorization: Bearer <key>' metadata")
    return current_caller.set(caller)
