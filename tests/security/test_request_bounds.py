"""Issue 8 item 5: one large Generate is refused by its size, before any per-character or per-item work.

Through the real gRPC API (messages under the 8 MiB transport cap): a huge prompt, thousands of references or
a huge provider_options value are INVALID_ARGUMENT with a field violation naming the limit, for known and
unknown models alike, and nothing reaches Runway. No timing here: the bounds are what keep the loop free
(the before/after health-check latencies are in the item's note)."""

from __future__ import annotations

from typing import Any

import grpc
from rpc_helpers import expect_error
from videogen.v1 import video_service_pb2 as pb

# The contract (see catalog.py): the longest prompt any Runway model takes, and the most references.
PROMPT_MAX = 20_000
IMAGE_REFS_MAX = 30
VIDEO_REFS_MAX = 10


def _posts(sim: Any) -> int:
    return sum(n for (method, _), n in sim.request_counts.items() if method == "POST")


async def _violation(server: Any, req: pb.GenerateRequest, field: str) -> str:
    before = _posts(server.simulator)
    err = await expect_error(server.stub.Generate(req, timeout=60))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT, err
    assert err.reason == "INVALID_ARGUMENT", err  # ours, not Runway's
    assert field in err.violations, err.violations
    assert len(err.message) < 2000
    assert _posts(server.simulator) == before
    return err.violations[field]


async def test_huge_prompt_is_refused_by_its_length(videogen_server):
    for model in ("gen4.5", "foo"):
        req = pb.GenerateRequest(model=model, prompt="p" * 7_500_000)
        description = await _violation(videogen_server, req, "prompt")
        assert f"at most {PROMPT_MAX}" in description, description
    # The bound counts UTF-16 units like Runway: 10,001 emoji are 20,002 units.
    description = await _violation(
        videogen_server, pb.GenerateRequest(model="foo", prompt="\U0001f600" * 10_001), "prompt"
    )
    assert f"at most {PROMPT_MAX}" in description


async def test_many_large_references_are_refused_by_their_count(videogen_server):
    refs = [pb.MediaReference(uri="https://example.com/" + "a" * 4980) for _ in range(1500)]
    for model in ("seedance2", "foo"):
        req = pb.GenerateRequest(model=model, prompt="p", references=refs)
        description = await _violation(videogen_server, req, "references")
        assert f"at most {VIDEO_REFS_MAX}" in description, description


async def test_400k_tiny_references_are_refused_by_their_count(videogen_server):
    refs = [pb.MediaReference(uri="x") for _ in range(400_000)]
    req = pb.GenerateRequest(model="foo", prompt="p", reference_images=refs)
    description = await _violation(videogen_server, req, "reference_images")
    assert f"at most {IMAGE_REFS_MAX}" in description, description


async def test_huge_provider_options_are_refused_by_their_shape(videogen_server):
    req = pb.GenerateRequest(model="foo", prompt="p")
    req.provider_options.update({"many": list(range(200_000))})
    description = await _violation(videogen_server, req, "provider_options")
    assert "at most" in description and "values" in description, description
    nested: dict[str, Any] = {"leaf": 1}
    for _ in range(20):
        nested = {"n": nested}
    req = pb.GenerateRequest(model="foo", prompt="p")
    req.provider_options.update({"deep": nested})
    description = await _violation(videogen_server, req, "provider_options")
    assert "levels" in description, description
    req = pb.GenerateRequest(model="veo3.1", prompt="p")
    req.provider_options.update({"negativePrompt": "n" * 7_000_000})
    description = await _violation(videogen_server, req, "provider_options.negativePrompt")
    assert "at most 1000" in description, description


async def test_the_largest_accepted_shapes_still_work(videogen_server):
    # At the bounds, not over them: the limits do not refuse what Runway takes.
    before = _posts(videogen_server.simulator)
    req = pb.GenerateRequest(
        model="seedance2",
        prompt="p" * 3500,
        reference_images=[pb.MediaReference(uri=f"https://example.com/{i}.png") for i in range(9)],
    )
    err = await expect_error(videogen_server.stub.Generate(req, timeout=30))
    # seedance2 is not simulated: Runway's (the simulator's) 400 proves that the request was sent.
    assert err.reason == "UPSTREAM_REJECTED" and _posts(videogen_server.simulator) == before + 1
