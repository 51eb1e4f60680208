"""The CLI's ``--client-cert``/``--client-key`` against the real server with mutual TLS (the throwaway PKI
of tests/security/conftest.py, generated with openssl)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from conftest import start_server, stop_server
from security.conftest import Pki, pki  # noqa: F401 (the session fixture, shared with the TLS tests)
from videogen_client.cli import EXIT_RPC_ERROR, main


async def test_cli_client_certificate_flags(
    tmp_path: Path,
    pki: Pki,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = await start_server(
        str(tmp_path),
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        tls_client_ca=str(pki.ca_cert),
    )
    try:
        base = ["--target", server.address, "--json", "--tls", "--ca-cert", str(pki.ca_cert)]
        missing = str(uuid.uuid4())

        async def code_of(*extra: str, seconds: str = "3") -> str:
            argv = [*base, "--timeout", seconds, *extra, "get", missing]
            assert await asyncio.to_thread(main, argv) == EXIT_RPC_ERROR
            return str(json.loads(capsys.readouterr().err)["error"]["code"])

        refused = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}  # the handshake fails; retried until the deadline

        # With the CA-signed client certificate the handshake succeeds and the call reaches the service
        # (NOT_FOUND for an unknown id); without one, or with a rogue one, the handshake fails.
        good = ("--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key))
        assert await code_of(*good, seconds="30") == "NOT_FOUND"
        assert await code_of() in refused
        assert (
            await code_of("--client-cert", str(pki.rogue_cert), "--client-key", str(pki.rogue_key)) in refused
        )
    finally:
        await stop_server(server)
