"""A target listing several addresses (`ipv4:127.0.0.1:50051,127.0.0.1:50052`) is balanced round_robin over
all of them by the Python client (sync and asyncio) and so by the CLI; a single address keeps grpc's default
(pick_first). Spreading calls over real replicas: tests/integration/test_run_replicas.py."""

from __future__ import annotations

import pytest
from videogen_client import aio, client
from videogen_client.models import channel_options

SEVERAL = "ipv4:127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053"


@pytest.mark.parametrize(
    "target",
    [
        SEVERAL,
        "ipv6:[::1]:50051,[::1]:50052",
        "127.0.0.1:50051,127.0.0.1:50052",
        # A DNS name may stand for several replicas (a Kubernetes headless Service: one address per pod).
        "dns:///videogen-headless.default.svc.cluster.local:50051",
        "DNS:videogen.internal:50051",
    ],
)
def test_several_addresses_are_balanced_round_robin(target: str) -> None:
    assert ("grpc.lb_policy_name", "round_robin") in channel_options(target)


@pytest.mark.parametrize("target", ["127.0.0.1:50051", "localhost:50051", "ipv4:127.0.0.1:1"])
def test_one_address_keeps_the_default_policy(target: str) -> None:
    assert all(name != "grpc.lb_policy_name" for name, _ in channel_options(target))


def test_both_clients_use_it(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, object]] = []

    def fake_channel(target: str, options: object = None, **_: object) -> object:
        seen.append((target, options))
        raise RuntimeError("stop here")

    monkeypatch.setattr(client.grpc, "insecure_channel", fake_channel)
    monkeypatch.setattr(aio.grpc.aio, "insecure_channel", fake_channel)
    for make in (client.VideoClient, aio.AsyncVideoClient):
        with pytest.raises(RuntimeError, match="stop here"):
            c = make(SEVERAL)
            c._get_stub()  # the async client connects lazily
    assert len(seen) == 2
    for target, options in seen:
        assert target == SEVERAL and ("grpc.lb_policy_name", "round_robin") in options  # type: ignore[operator]
