"""TLS for the gRPC port: server credentials from the PEM files the configuration names.

- ``VIDEOGEN_TLS_CERT`` + ``VIDEOGEN_TLS_KEY``: TLS (the certificate chain and its private key).
- ``VIDEOGEN_TLS_CLIENT_CA`` on top: mutual TLS. Clients must present a certificate signed by that CA;
  a handshake without one fails before any RPC (and before caller keys are even looked at).

Errors name the variable and the path, never the file's content (the key file is a secret).
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from pathlib import Path

import grpc

from videogen_server.config import Config, ConfigError


class TlsMode(enum.StrEnum):
    OFF = "off"
    TLS = "on"
    MUTUAL = "mutual"


def tls_mode(config: Config) -> TlsMode:
    if not config.tls_cert:
        return TlsMode.OFF
    return TlsMode.MUTUAL if config.tls_client_ca else TlsMode.TLS


@dataclass(frozen=True)
class _Pem:
    cert: bytes
    key: bytes
    client_ca: bytes | None


def _read(variable: str, path: str, marker: bytes) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ConfigError(f"{variable}: cannot read {path!r} ({why})") from None
    if marker not in data:
        raise ConfigError(f"{variable}: {path!r} is not a PEM file with a {marker.decode()} block")
    return data


def _load(config: Config) -> _Pem:
    assert config.tls_cert and config.tls_key
    return _Pem(
        cert=_read("VIDEOGEN_TLS_CERT", config.tls_cert, b"-----BEGIN CERTIFICATE-----"),
        key=_read("VIDEOGEN_TLS_KEY", config.tls_key, b"PRIVATE KEY-----"),
        client_ca=(
            _read("VIDEOGEN_TLS_CLIENT_CA", config.tls_client_ca, b"-----BEGIN CERTIFICATE-----")
            if config.tls_client_ca
            else None
        ),
    )


async def server_credentials(config: Config) -> grpc.ServerCredentials | None:
    """The port's credentials, or None for plaintext. Files are read off the event loop."""
    if tls_mode(config) is TlsMode.OFF:
        return None
    pem = await asyncio.to_thread(_load, config)
    return grpc.ssl_server_credentials(
        [(pem.key, pem.cert)],
        root_certificates=pem.client_ca,
        require_client_auth=pem.client_ca is not None,
    )
