"""HMAC-signed, expiring output URL tokens (the simulator's stand-in for CloudFront ``?_jwt=``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Claims:
    task_id: str
    index: int
    expires_at: float


class UrlSigner:
    """Mints and checks tokens of the form ``base64url(claims).base64url(hmac-sha256)``."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def mint(self, task_id: str, index: int, ttl: float, now: float | None = None) -> str:
        exp = (time.time() if now is None else now) + ttl
        payload = _b64(json.dumps({"t": task_id, "i": index, "exp": exp}, separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def verify(self, token: str) -> Claims | None:
        """The token's claims when the signature is valid (expiry is checked by the caller), else None."""
        payload, dot, mac = token.partition(".")
        if not dot or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            return Claims(task_id=str(data["t"]), index=int(data["i"]), expires_at=float(data["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
