"""Faults on Generate's POST (a paid task): anything ambiguous is reported and never retried; only a 429 or a
connection that never opened is retried. A retry with the same request_id after an unknown outcome returns the
recorded FAILED video and sends nothing."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from faults.helpers import posts, sim_tasks
from rpc_helpers import expect_error
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.domain.video import OUTCOME_UNKNOWN_CODE
from videogen_server.simulator.faults import Fault


def request(request_id: str = "") -> pb.GenerateRequest:
    return pb.GenerateRequest(model="gen4.5", prompt="a boat", seconds=5, request_id=request_id)


async def retry_returns_the_failed_video(stub, request_id: str, video_id: str) -> video_pb2.Video:
    video = (await stub.Generate(request(request_id))).video
    assert video.id == video_id
    assert video.status == video_pb2.VIDEO_STATUS_FAILED
    assert video.error.code == OUTCOME_UNKNOWN_CODE
    got = (await stub.Get(pb.GetRequest(id=video_id))).video
    assert got.status == video_pb2.VIDEO_STATUS_FAILED and got.error.code == OUTCOME_UNKNOWN_CODE
    return video


# (fault, does Runway end up holding a task it may bill?)
AMBIGUOUS_CREATE_FAULTS = {
    "500": (Fault(route="create", kind="status", status=500), False),
    "502": (Fault(route="create", kind="status", status=502), False),
    "503": (Fault(route="create", kind="status", status=503), False),
    "reset after the body was sent": (Fault(route="create", kind="reset_after_create"), True),
    "unreadable 200": (Fault(route="create", kind="malformed_json"), True),
}


@pytest.mark.parametrize("name", list(AMBIGUOUS_CREATE_FAULTS))
async def test_an_ambiguous_create_is_reported_never_retried(external_server, name):
    fault, billed = AMBIGUOUS_CREATE_FAULTS[name]
    stub, sim = external_server.stub, external_server.simulator
    sim.faults.add(fault)
    err = await expect_error(stub.Generate(request("key-1")))
    assert err.code == grpc.StatusCode.UNAVAILABLE
    assert err.reason == "UPSTREAM_OUTCOME_UNKNOWN"
    video_id = err.metadata["id"]
    assert posts(sim) == 1  # one paid attempt at most
    assert await sim_tasks(sim) == (1 if billed else 0)

    await retry_returns_the_failed_video(stub, "key-1", video_id)
    assert posts(sim) == 1  # the retry sent nothing
    # A new request_id is a new, deliberate attempt.
    fresh = (await stub.Generate(request("key-2"))).video
    assert fresh.status == video_pb2.VIDEO_STATUS_QUEUED and fresh.id != video_id
    assert posts(sim) == 2


async def test_a_create_slower_than_the_deadline_is_recorded_never_retried(external_server):
    stub, sim = external_server.stub, external_server.simulator
    sim.faults.add(Fault(route="create", kind="slow", delay=3.0))
    err = await expect_error(stub.Generate(request("slow-1"), timeout=0.5))
    assert err.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert posts(sim) == 1
    # The POST was sent: its answer is awaited under the service's own timeout, not the caller's deadline,
    # so the task Runway started (and billed) is recorded. A retry of the request_id joins the create still
    # in flight, then returns the real task; nothing is sent twice.
    video = (await stub.Generate(request("slow-1"), timeout=10)).video
    assert video.status == video_pb2.VIDEO_STATUS_QUEUED and video.upstream_task_id
    assert posts(sim) == 1 and await sim_tasks(sim) == 1


async def test_no_create_is_sent_for_a_caller_whose_deadline_passed_before_sending(external_server):
    """The caller's deadline still bounds what happens before the POST leaves (here a 429's backoff)."""
    stub, sim = external_server.stub, external_server.simulator
    sim.faults.add(Fault(route="create", kind="status", status=429, retry_after=2, count=1))
    err = await expect_error(stub.Generate(request("late-429"), timeout=0.5))
    assert err.code == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.sleep(2.5)  # past the Retry-After: a create still going would have POSTed again by now
    assert posts(sim) == 1 and await sim_tasks(sim) == 0
    # Nothing was started: the same request_id may be tried again.
    video = (await stub.Generate(request("late-429"))).video
    assert video.status == video_pb2.VIDEO_STATUS_QUEUED and posts(sim) == 2


@pytest.mark.parametrize("retry_after", [None, 0.2], ids=["no Retry-After", "Retry-After"])
async def test_a_429_is_retried_and_makes_one_task(external_server, retry_after):
    stub, sim = external_server.stub, external_server.simulator
    sim.faults.add(Fault(route="create", kind="status", status=429, retry_after=retry_after, count=2))
    video = (await stub.Generate(request("rl-1"))).video
    assert video.status == video_pb2.VIDEO_STATUS_QUEUED
    assert posts(sim) == 3
    assert await sim_tasks(sim) == 1
    again = (await stub.Generate(request("rl-1"))).video
    assert again.id == video.id and posts(sim) == 3


async def test_a_429_past_the_budget_is_unavailable_and_the_key_stays_usable(external_server):
    stub, sim = external_server.stub, external_server.simulator
    sim.faults.add(Fault(route="create", kind="status", status=429, retry_after=3600, count=1))
    err = await expect_error(stub.Generate(request("cap-1")))
    assert err.code == grpc.StatusCode.UNAVAILABLE and err.reason == "UPSTREAM_RATE_LIMITED"
    assert err.retry_delay == 3600  # a long Retry-After is passed on, not waited for
    assert posts(sim) == 1 and await sim_tasks(sim) == 0
    # Runway refused it, so nothing was started: the same key may try again.
    video = (await stub.Generate(request("cap-1"))).video
    assert video.status == video_pb2.VIDEO_STATUS_QUEUED
    assert posts(sim) == 2 and await sim_tasks(sim) == 1


async def test_out_of_credits_is_failed_precondition(external_server):
    stub, sim = external_server.stub, external_server.simulator
    sim.faults.add(Fault(route="create", kind="credits"))
    err = await expect_error(stub.Generate(request("cr-1")))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.reason == "UPSTREAM_INSUFFICIENT_CREDITS"
    assert posts(sim) == 1 and await sim_tasks(sim) == 0


@pytest.mark.parametrize("status", [401, 403])
async def test_a_rejected_service_key_is_internal_with_a_generic_message(external_server, status):
    stub, sim = external_server.stub, external_server.simulator
    sim.faults.add(Fault(route="create", kind="status", status=status))
    err = await expect_error(stub.Generate(request("auth-1")))
    assert err.code == grpc.StatusCode.INTERNAL
    assert err.reason == "UPSTREAM_AUTH_FAILED"
    assert "key_test" not in err.message and str(status) not in err.message
    assert "provider" in err.message
    assert posts(sim) == 1
