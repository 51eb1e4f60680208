"""Several keys in the simulator (issue 12): each key its own organization (credits, per-model caps, usage,
tasks), /v1/organization per key checked against the runwayml SDK's OrganizationRetrieveResponse, the
/_sim/keys control route and per-key request counts in /_sim/stats."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest
from runwayml import AsyncRunwayML
from runwayml.types.organization_retrieve_response import OrganizationRetrieveResponse
from videogen_server.simulator import RunwaySimulator

from .conftest import GEN45_T2V, fast_config

A = "key_sim_a_" + "1" * 20
B = "key_sim_b_" + "2" * 20


def headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", "X-Runway-Version": "2024-11-06"}


@pytest.fixture
async def sim2() -> AsyncIterator[RunwaySimulator]:
    simulator = RunwaySimulator(api_key=A, config=fast_config(), keys={"b": B})
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


async def test_organization_per_key_parses_with_the_sdk(sim2: RunwaySimulator) -> None:
    sim2.organization("b").credits = 77
    await_control = httpx.AsyncClient(base_url=sim2.base_url)
    async with await_control as admin:
        r = await admin.post(
            "/_sim/keys/b",
            json={"maxDailyGenerations": 3, "models": {"gen4.5": {"maxConcurrentGenerations": None}}},
        )
        assert r.status_code == 200, r.text
    for secret, credits in ((A, sim2.config.credits), (B, 77)):
        async with AsyncRunwayML(api_key=secret, base_url=sim2.base_url, max_retries=0) as client:
            org = await client.organization.retrieve()
        assert isinstance(org, OrganizationRetrieveResponse)
        assert org.credit_balance == credits
    assert org.tier.models["gen4.5"].max_concurrent_generations is None
    assert org.tier.models["gen4.5"].max_daily_generations == 3
    assert org.tier.models["veo3.1"].max_concurrent_generations == 2  # the config's, for b too
    assert org.usage.models["gen4.5"].daily_generations == 0


async def test_tasks_belong_to_their_key_and_are_404_to_another(sim2: RunwaySimulator) -> None:
    async with httpx.AsyncClient(base_url=sim2.base_url, timeout=10) as http:
        r = await http.post("/v1/text_to_video", json=GEN45_T2V, headers=headers(B))
        assert r.status_code == 200
        task_id = r.json()["id"]
        assert sim2.task_key(task_id) == "b"
        assert (await http.get(f"/v1/tasks/{task_id}", headers=headers(A))).status_code == 404
        assert (await http.delete(f"/v1/tasks/{task_id}", headers=headers(A))).status_code == 404
        assert (await http.get(f"/v1/tasks/{task_id}", headers=headers(B))).status_code == 200
        org_b = (await http.get("/v1/organization", headers=headers(B))).json()
        org_a = (await http.get("/v1/organization", headers=headers(A))).json()
        assert org_b["usage"]["models"]["gen4.5"]["dailyGenerations"] == 1
        assert org_a["usage"]["models"]["gen4.5"]["dailyGenerations"] == 0
        stats = (await http.get("/_sim/stats")).json()
    assert stats["keys"]["b"] == {
        "GET /v1/organization": 1,
        "GET /v1/tasks/{id}": 1,
        "POST /v1/text_to_video": 1,
    }
    assert stats["keys"]["default"] == {
        "DELETE /v1/tasks/{id}": 1,
        "GET /v1/organization": 1,
        "GET /v1/tasks/{id}": 1,
    }
    assert A not in str(stats) and B not in str(stats)


async def test_each_key_has_its_own_credits_and_daily_cap(sim2: RunwaySimulator) -> None:
    async with httpx.AsyncClient(base_url=sim2.base_url, timeout=10) as http:
        assert (await http.post("/_sim/keys/default", json={"credits": 0})).status_code == 200
        r = await http.post("/v1/text_to_video", json=GEN45_T2V, headers=headers(A))
        assert r.status_code == 400
        assert r.json() == {"error": "You do not have enough credits to run this task."}
        assert sim2.config.credits == 0  # the first key's balance is the config's, as before
        await http.post("/_sim/keys/b", json={"models": {"gen4.5": {"maxDailyGenerations": 1}}})
        assert (await http.post("/v1/text_to_video", json=GEN45_T2V, headers=headers(B))).status_code == 200
        assert (await http.post("/v1/text_to_video", json=GEN45_T2V, headers=headers(B))).status_code == 429
        veo = {"model": "veo3.1", "promptText": "x", "ratio": "1280:720", "duration": 8}
        assert (await http.post("/v1/text_to_video", json=veo, headers=headers(B))).status_code == 200
        bad = await http.post("/_sim/keys/b", json={"credits": -1})
        assert bad.status_code == 400
        assert (await http.post("/_sim/keys/nobody", json={})).status_code == 404
        listed = (await http.get("/_sim/keys")).json()["keys"]
    assert [k["name"] for k in listed] == ["default", "b"]


async def test_concurrency_per_key_throttles_beyond_its_own_cap(sim2: RunwaySimulator) -> None:
    sim2.config.pending_seconds = 0.0
    sim2.config.running_seconds = 30.0
    async with httpx.AsyncClient(base_url=sim2.base_url, timeout=10) as http:
        await http.post("/_sim/keys/b", json={"maxConcurrentGenerations": 1})
        ids = [
            (await http.post("/v1/text_to_video", json=GEN45_T2V, headers=headers(B))).json()["id"]
            for _ in range(2)
        ]
        first = [(await http.post("/v1/text_to_video", json=GEN45_T2V, headers=headers(A))).json()["id"]]
    assert [sim2.task_status(i) for i in ids] == ["RUNNING", "THROTTLED"]
    assert sim2.task_status(first[0]) == "RUNNING"  # the other organization's slots are its own


def test_the_command_line_takes_keys() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "videogen_server.simulator", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--keys" in out.stdout
