"""TLS and mutual TLS on the gRPC port: real handshakes on loopback with certificates made at runtime."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from conftest import start_server, stop_server
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rpc_helpers import expect_error
from videogen.v1 import video_pb2, video_service_pb2_grpc
from videogen.v1 import video_service_pb2 as pb
from videogen_client import AsyncVideoClient
from videogen_server.api.server import App
from videogen_server.config import Config, ConfigError

GRPCURL = str(Path(sys.executable).parent / "grpcurl")


def _secure(address: str, pki, *, client: str | None = None, roots: bool = True) -> grpc.aio.Channel:
    cert = key = None
    if client == "good":
        cert, key = pki.read(pki.client_cert), pki.read(pki.client_key)
    elif client == "rogue":
        cert, key = pki.read(pki.rogue_cert), pki.read(pki.rogue_key)
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki.read(pki.ca_cert) if roots else None, private_key=key, certificate_chain=cert
    )
    return grpc.aio.secure_channel(address, creds)


async def _generate(channel: grpc.aio.Channel) -> video_pb2.Video:
    stub = video_service_pb2_grpc.VideoServiceStub(channel)
    req = pb.GenerateRequest(model="gen4.5", prompt="over TLS", seconds=5)
    return (await stub.Generate(req, timeout=10)).video


async def _health(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return (await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)).status


async def test_tls_handshake_succeeds_with_the_ca_and_plaintext_fails(tmp_path, pki):
    server = await start_server(str(tmp_path), tls_cert=str(pki.server_cert), tls_key=str(pki.server_key))
    try:
        async with _secure(server.address, pki) as channel:
            video = await _generate(channel)
            assert video.status == video_pb2.VIDEO_STATUS_QUEUED
            assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
        # A plaintext client cannot talk to a TLS port.
        async with grpc.aio.insecure_channel(server.address) as plain:
            err = await expect_error(_generate(plain))
            assert err.code == grpc.StatusCode.UNAVAILABLE
        # A TLS client that does not trust the server's CA (system roots only) refuses the handshake.
        async with _secure(server.address, pki, roots=False) as untrusting:
            err = await expect_error(_generate(untrusting))
            assert err.code == grpc.StatusCode.UNAVAILABLE
        assert server.simulator.request_counts[("POST", "/v1/text_to_video")] == 1
    finally:
        await stop_server(server)


async def test_mutual_tls_requires_a_client_certificate_from_the_ca(tmp_path, pki):
    server = await start_server(
        str(tmp_path),
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        tls_client_ca=str(pki.ca_cert),
    )
    try:
        for client in (None, "rogue"):
            async with _secure(server.address, pki, client=client) as channel:
                err = await expect_error(_generate(channel))
                assert err.code == grpc.StatusCode.UNAVAILABLE, client
                # Not even health answers without a client certificate: the handshake itself fails.
                err = await expect_error(_health(channel))
                assert err.code == grpc.StatusCode.UNAVAILABLE, client
        assert server.simulator.request_counts[("POST", "/v1/text_to_video")] == 0
        async with _secure(server.address, pki, client="good") as channel:
            assert (await _generate(channel)).status == video_pb2.VIDEO_STATUS_QUEUED
        assert server.simulator.request_counts[("POST", "/v1/text_to_video")] == 1

        # The Python client's mutual TLS options.
        async with AsyncVideoClient(
            server.address,
            root_certificates=pki.read(pki.ca_cert),
            certificate_chain=pki.read(pki.client_cert),
            private_key=pki.read(pki.client_key),
        ) as client:
            video = await client.generate("gen4.5", "via the client", seconds=5)
            assert (await client.get(video.id)).id == video.id

        # And another implementation (grpcurl, Go's TLS stack) with and without a client certificate.
        base = [GRPCURL, "-cacert", str(pki.ca_cert), "-max-time", "10"]
        ok = await _run([*base, "-cert", str(pki.client_cert), "-key", str(pki.client_key),
                         server.address, "list"])  # fmt: skip
        assert ok.returncode == 0 and "videogen.v1.VideoService" in ok.stdout, ok.stderr
        refused = await _run([*base, server.address, "list"])
        assert refused.returncode != 0 and "videogen.v1.VideoService" not in refused.stdout
    finally:
        await stop_server(server)


async def test_mutual_tls_does_not_replace_caller_keys(tmp_path, pki):
    server = await start_server(
        str(tmp_path),
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        tls_client_ca=str(pki.ca_cert),
        api_keys={"alice": "alice-key-1-0123456789"},
    )
    try:
        async with _secure(server.address, pki, client="good") as channel:
            err = await expect_error(_generate(channel))
            assert err.code == grpc.StatusCode.UNAUTHENTICATED
            stub = video_service_pb2_grpc.VideoServiceStub(channel)
            req = pb.GenerateRequest(model="gen4.5", prompt="both", seconds=5)
            ok = await stub.Generate(
                req, metadata=(("authorization", "Bearer alice-key-1-0123456789"),), timeout=10
            )
            assert ok.video.id
    finally:
        await stop_server(server)


class _Done:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


async def _run(argv: list[str]) -> _Done:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    return _Done(proc.returncode or 0, out.decode(), err.decode())


def test_tls_configuration_errors_name_the_variable(tmp_path, pki):
    with pytest.raises(ConfigError, match="VIDEOGEN_TLS_KEY"):
        Config.from_env({"VIDEOGEN_TLS_CERT": str(pki.server_cert)})
    with pytest.raises(ConfigError, match="VIDEOGEN_TLS_CLIENT_CA"):
        Config.from_env({"VIDEOGEN_TLS_CLIENT_CA": str(pki.ca_cert)})
    config = Config.from_env(
        {
            "VIDEOGEN_TLS_CERT": str(pki.server_cert),
            "VIDEOGEN_TLS_KEY": str(pki.server_key),
            "VIDEOGEN_TLS_CLIENT_CA": str(pki.ca_cert),
        }
    )
    assert (config.tls_cert, config.tls_key, config.tls_client_ca) == (
        str(pki.server_cert),
        str(pki.server_key),
        str(pki.ca_cert),
    )


async def test_unreadable_or_swapped_pem_files_fail_at_start_without_echoing_them(tmp_path, pki):
    key_text = pki.read(pki.server_key).decode()
    for cert, key, variable in (
        (tmp_path / "missing.pem", pki.server_key, "VIDEOGEN_TLS_CERT"),
        # The key given as the certificate: refused, and the error must not quote the key.
        (pki.server_key, pki.server_key, "VIDEOGEN_TLS_CERT"),
        (pki.server_cert, pki.server_cert, "VIDEOGEN_TLS_KEY"),
    ):
        app = App(
            Config(listen="127.0.0.1:0", data_dir=str(tmp_path / "d"), tls_cert=str(cert), tls_key=str(key))
        )
        try:
            with pytest.raises(ConfigError, match=variable) as info:
                await app.start()
            assert "PRIVATE KEY-----\n" not in str(info.value)
            assert key_text.splitlines()[1] not in str(info.value)
        finally:
            await app.stop(grace=0)
