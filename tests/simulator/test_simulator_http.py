"""The simulator over raw HTTP (httpx): headers, lifecycle, outputs, validation and every fault kind."""

from __future__ import annotations

import asyncio
import json
import struct
import time
from typing import Any

import httpx
import pytest
from videogen_server.simulator import Fault, RunwaySimulator

GEN45: dict[str, Any] = {"model": "gen4.5", "promptText": "a red fox", "ratio": "1280:720", "duration": 5}


async def create(http: httpx.AsyncClient, body: dict[str, Any] | None = None) -> str:
    r = await http.post("/v1/text_to_video", json=body or GEN45)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


async def wait_for(http: httpx.AsyncClient, task_id: str, status: str = "SUCCEEDED") -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        body: dict[str, Any] = (await http.get(f"/v1/tasks/{task_id}")).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.01)
    raise AssertionError(f"task {task_id} never reached {status}")


async def output_url(http: httpx.AsyncClient, task_id: str) -> str:
    return str((await wait_for(http, task_id))["output"][0])


# --- headers and ids --------------------------------------------------------------------------------


async def test_version_and_auth_headers(sim: RunwaySimulator) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url) as raw:
        auth = {"Authorization": f"Bearer {sim.api_key}"}
        r = await raw.get("/v1/organization", headers=auth)
        assert r.status_code == 400 and "X-Runway-Version" in r.json()["error"]
        r = await raw.get("/v1/organization", headers={**auth, "X-Runway-Version": "2024-09-13"})
        assert r.status_code == 400
        r = await raw.get("/v1/organization", headers={"X-Runway-Version": "2024-11-06"})
        assert r.status_code == 401 and r.json()["error"]
        r = await raw.post("/v1/text_to_video", json=GEN45, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
    assert len(sim.faults) == 0 and sim.request_counts[("POST", "/v1/text_to_video")] == 1


async def test_task_ids(http: httpx.AsyncClient) -> None:
    r = await http.get("/v1/tasks/not-a-uuid")
    assert r.status_code == 400 and r.json()["issues"][0]["path"] == ["id"]
    r = await http.get("/v1/tasks/3f1c0b8e-8a3b-4c55-9c3e-2f1d0a9b7c6d")
    assert r.status_code == 404 and r.json() == {"error": "Could not find Task"}
    r = await http.delete("/v1/tasks/3f1c0b8e-8a3b-4c55-9c3e-2f1d0a9b7c6d")
    assert r.status_code == 404


# --- lifecycle ------------------------------------------------------------------------------------


async def test_lifecycle_with_throttling_and_progress(sim: RunwaySimulator, http: httpx.AsyncClient) -> None:
    sim.config.pending_seconds, sim.config.running_seconds = 0.2, 0.3
    ids = [await create(http) for _ in range(3)]
    seen: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        bodies = [(await http.get(f"/v1/tasks/{i}")).json() for i in ids]
        for b in bodies:
            seen[b["id"]].append(b)
        if all(b["status"] == "SUCCEEDED" for b in bodies):
            break
        await asyncio.sleep(0.01)
    statuses = {i: [b["status"] for b in seen[i]] for i in ids}
    for i in ids[:2]:
        assert "THROTTLED" not in statuses[i]
    assert "THROTTLED" in statuses[ids[2]]
    for i in ids:
        order = list(dict.fromkeys(statuses[i]))
        assert order[0] == "PENDING" and order[-1] == "SUCCEEDED" and "RUNNING" in order
        progress = [b["progress"] for b in seen[i] if b["status"] == "RUNNING"]
        assert progress == sorted(progress) and all(0 <= p <= 1 for p in progress)
        for b in seen[i]:
            assert b["createdAt"].endswith("Z") and len(b["createdAt"]) == 24
            assert ("estimatedCost" in b) == (b["status"] != "SUCCEEDED")
            assert ("progress" in b) == (b["status"] == "RUNNING")
            assert ("output" in b) == ("cost" in b) == (b["status"] == "SUCCEEDED")
    # The throttled task only started once a slot freed (each poll round reads task 1 before task 3, so
    # task 3 may be seen RUNNING in the round just before task 1 is seen SUCCEEDED).
    first_done = min(next(n for n, b in enumerate(seen[i]) if b["status"] == "SUCCEEDED") for i in ids[:2])
    third_run = next(n for n, b in enumerate(seen[ids[2]]) if b["status"] == "RUNNING")
    assert third_run >= first_done - 1


async def test_failure_marker(sim: RunwaySimulator, http: httpx.AsyncClient) -> None:
    balance = sim.config.credits
    task_id = await create(http, {**GEN45, "promptText": "x [sim:fail=INTERNAL.BAD_OUTPUT.CODE01]"})
    body = await wait_for(http, task_id, "FAILED")
    assert body["failureCode"] == "INTERNAL.BAD_OUTPUT.CODE01" and body["failure"]
    assert body["cost"] == {"credits": 0} and "output" not in body
    assert sim.config.credits == balance  # refunded


async def test_delete_cancels_and_deletes_output(sim: RunwaySimulator, http: httpx.AsyncClient) -> None:
    queued = await create(http)
    assert (await http.delete(f"/v1/tasks/{queued}")).status_code == 204
    assert (await http.get(f"/v1/tasks/{queued}")).status_code == 404
    assert sim.task_status(queued) is None
    done = await create(http)
    url = await output_url(http, done)
    r = await http.delete(f"/v1/tasks/{done}")
    assert r.status_code == 204 and r.content == b""
    assert (await http.get(url)).status_code == 404
    assert (await http.delete(f"/v1/tasks/{done}")).status_code == 404


async def test_organization_credits_and_daily_limit(sim: RunwaySimulator, http: httpx.AsyncClient) -> None:
    org = (await http.get("/v1/organization")).json()
    assert set(org) == {"creditBalance", "tier", "usage"}
    assert org["tier"]["models"]["veo3.1"] == {"maxConcurrentGenerations": 2, "maxDailyGenerations": None}
    sim.config.daily_limit = 1
    await create(http)
    r = await http.post("/v1/text_to_video", json=GEN45)
    assert r.status_code == 429
    org = (await http.get("/v1/organization")).json()
    assert org["usage"]["models"]["gen4.5"] == {"dailyGenerations": 1}
    assert org["creditBalance"] == sim.config.credits
    sim.config.credits = 10
    r = await http.post("/v1/text_to_video", json={**GEN45, "model": "veo3.1", "duration": 8})
    assert r.status_code == 400
    assert r.json() == {"error": "You do not have enough credits to run this task."}


# --- validation -----------------------------------------------------------------------------------


def _issue(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "Validation of body failed" and body["docUrl"].startswith("https://")
    issue: dict[str, Any] = body["issues"][0]
    return issue


@pytest.mark.parametrize("model", ["gen3a_turbo", "veo3", "gen4_aleph", "nope", None])
async def test_unknown_and_retired_models(http: httpx.AsyncClient, model: str | None) -> None:
    r = await http.post(
        "/v1/image_to_video", json={**GEN45, "model": model, "promptImage": "https://a.com/x.png"}
    )
    assert r.json() == {
        "error": "Validation of body failed",
        "issues": [
            {
                "code": "invalid_union",
                "note": "No matching discriminator",
                "path": ["model"],
                "message": "Invalid input",
            }
        ],
        "docUrl": "https://docs.dev.runwayml.com/api",
    }


async def test_field_rules(http: httpx.AsyncClient) -> None:
    img = "https://example.com/a.png"
    assert _issue(await http.post("/v1/text_to_video", json={**GEN45, "model": "gen4_turbo"}))["path"] == [
        "model"
    ]
    assert _issue(await http.post("/v1/video_to_video", json=GEN45))["code"] == "invalid_union"
    no_duration = {k: v for k, v in GEN45.items() if k != "duration"}
    assert _issue(await http.post("/v1/text_to_video", json=no_duration))["code"] == "invalid_type"
    assert (
        _issue(await http.post("/v1/text_to_video", json={**GEN45, "promptText": "😀" * 501}))["code"]
        == "too_big"
    )
    assert (await http.post("/v1/text_to_video", json={**GEN45, "promptText": "😀" * 500})).status_code == 200
    assert (
        _issue(await http.post("/v1/text_to_video", json={**GEN45, "promptText": ""}))["code"] == "too_small"
    )
    assert _issue(await http.post("/v1/text_to_video", json={**GEN45, "seed": 2**32}))["path"] == ["seed"]
    veo = {"model": "veo3.1", "promptText": "x", "ratio": "1080:1920"}
    assert (
        await http.post("/v1/text_to_video", json={**veo, "duration": 6, "audio": False})
    ).status_code == 200
    assert (
        _issue(await http.post("/v1/text_to_video", json={**veo, "duration": 5}))["code"] == "invalid_value"
    )
    issue = _issue(await http.post("/v1/text_to_video", json={**veo, "contentModeration": {}}))
    assert issue["code"] == "unrecognized_keys" and issue["keys"] == ["contentModeration"]
    i2v = {**veo, "promptImage": [{"uri": img, "position": "last"}]}
    assert _issue(await http.post("/v1/image_to_video", json=i2v))["code"] == "custom"
    bad_uris = [
        "http://example.com/a.png",
        "https://10.0.0.1/a.png",
        "data:video/mp4;base64,AAAA",
        "data:image/png,x",
    ]
    for uri in bad_uris:
        body = {"model": "gen4_turbo", "ratio": "960:960", "promptImage": uri}
        assert _issue(await http.post("/v1/image_to_video", json=body))["path"] == ["promptImage"]
    # A runway:// URI must name a stored upload (test_simulator_uploads.py has the upload's own rules).
    unknown = {"model": "gen4_turbo", "ratio": "960:960", "promptImage": "runway://upload/abc123"}
    assert _issue(await http.post("/v1/image_to_video", json=unknown))["path"] == ["promptImage"]
    ticket = (await http.post("/v1/uploads", json={"filename": "a.png", "type": "ephemeral"})).json()
    form = [
        *((k, (None, v)) for k, v in ticket["fields"].items()),
        ("file", ("a.png", b"x" * 600, "image/png")),
    ]
    async with httpx.AsyncClient() as storage:
        assert (await storage.post(ticket["uploadUrl"], files=form)).status_code == 204
    for uri in [ticket["runwayUri"], "data:image/png;base64,iVBORw0KGgo=", img]:
        ok: dict[str, Any] = {
            "model": "gen4_turbo",
            "ratio": "960:960",
            "promptImage": [{"uri": uri, "position": "first"}],
        }
        assert (await http.post("/v1/image_to_video", json=ok)).status_code == 200
    aleph = {"model": "aleph2", "videoUri": "data:video/mp4;base64,AAAA", "targetAspectRatio": "1:1"}
    assert (await http.post("/v1/video_to_video", json=aleph)).status_code == 200
    assert _issue(
        await http.post("/v1/video_to_video", json={**aleph, "videoUri": img.replace("https", "ftp")})
    )
    assert (
        _issue(await http.post("/v1/video_to_video", json={**aleph, "extra": 1}))["code"]
        == "unrecognized_keys"
    )
    keyframes = [
        {"uri": img, "seconds": 1, "range": {"start_seconds": 0, "end_seconds": 2}},
        {"uri": img, "at": 0.5},
    ]
    assert _issue(await http.post("/v1/video_to_video", json={**aleph, "keyframes": keyframes}))["path"] == [
        "keyframes"
    ]


# --- outputs --------------------------------------------------------------------------------------


def _boxes(data: bytes) -> list[tuple[bytes, int]]:
    boxes, pos = [], 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        boxes.append((kind, size))
        pos += size
    assert pos == len(data)
    return boxes


async def test_output_bytes_and_ranges(sim: RunwaySimulator, http: httpx.AsyncClient) -> None:
    task_id = await create(http)
    url = await output_url(http, task_id)
    expected = sim.output_bytes(task_id)
    async with httpx.AsyncClient() as cdn:  # no Authorization on output URLs
        r = await cdn.get(url)
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
        assert r.headers["accept-ranges"] == "bytes" and int(r.headers["content-length"]) == 300_000
        assert r.content == expected and len(expected) == 300_000 and expected[4:8] == b"ftyp"
        assert [k for k, _ in _boxes(expected)] == [b"ftyp", b"moov", b"mdat"]
        r = await cdn.get(url, headers={"Range": "bytes=1000-70000"})
        assert r.status_code == 206 and r.content == expected[1000:70001]
        assert r.headers["content-range"] == "bytes 1000-70000/300000"
        r = await cdn.get(url, headers={"Range": "bytes=299990-"})
        assert r.status_code == 206 and r.content == expected[-10:]
        r = await cdn.get(url, headers={"Range": "bytes=-5"})
        assert r.status_code == 206 and r.content == expected[-5:]
        r = await cdn.get(url, headers={"Range": "bytes=300000-"})
        assert r.status_code == 416 and r.headers["content-range"] == "bytes */300000"
        r = await cdn.head(url)
        assert r.status_code == 200 and r.headers["content-length"] == "300000" and r.content == b""
        assert (await cdn.get(url.replace("_jwt=", "_jwt=x"))).status_code == 403
    other = await create(http)
    assert sim.output_bytes(other) != expected
    assert sim.request_counts[("GET", "output")] >= 6


async def test_expired_url(sim: RunwaySimulator, http: httpx.AsyncClient) -> None:
    sim.config.output_url_ttl = 0
    url = await output_url(http, await create(http))
    r = await http.get(url)
    assert r.status_code == 403
    sim.config.output_url_ttl = 60
    task = await wait_for(http, url.split("/")[-2])
    assert task["output"][0] != url and (await http.get(task["output"][0])).status_code == 200


async def test_large_output_is_lazy(sim: RunwaySimulator, http: httpx.AsyncClient) -> None:
    sim.config.output_size = 256 * 1024 * 1024
    task_id = await create(http)
    url = await output_url(http, task_id)
    r = await http.head(url)
    assert int(r.headers["content-length"]) == 256 * 1024 * 1024
    head = (await http.get(url, headers={"Range": "bytes=0-1023"})).content
    kinds = _boxes_prefix(head)
    assert kinds[-1] == (b"mdat", 256 * 1024 * 1024 - sum(s for _, s in kinds[:-1]))
    tail = await http.get(url, headers={"Range": f"bytes={256 * 1024 * 1024 - 300_000}-"})
    assert tail.status_code == 206 and len(tail.content) == 300_000


def _boxes_prefix(data: bytes) -> list[tuple[bytes, int]]:
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        boxes.append((kind, size))
        if kind == b"mdat":
            break
        pos += size
    return boxes


# --- faults ---------------------------------------------------------------------------------------


async def test_status_fault_on_create(sim: RunwaySimulator, http: httpx.AsyncClient) -> None:
    sim.faults.add(Fault(route="create", kind="status", status=503, retry_after=2, count=2))
    for _ in range(2):
        r = await http.post("/v1/text_to_video", json=GEN45)
        assert r.status_code == 503 and r.headers["retry-after"] == "2" and r.json()["error"]
    await create(http)
    stats = (await http.get("/_sim/stats")).json()
    assert stats["tasks"] == 1 and stats["requests"]["POST /v1/text_to_video"] == 3


async def test_faults_are_fifo_per_route(sim: RunwaySimulator, http: httpx.AsyncClient) -> None:
    task_id = await create(http)
    sim.faults.add(Fault(route="any", kind="status", status=502), Fault(route="get_task", status=429))
    assert (await http.get("/v1/organization")).status_code == 502
    assert (await http.get(f"/v1/tasks/{task_id}")).status_code == 429
    assert (await http.get(f"/v1/tasks/{task_id}")).status_code == 200
    sim.faults.add(Fault(route="any", kind="credits"))
    assert (await http.get("/v1/organization")).status_code == 200  # credits applies to create only
    r = await http.post("/v1/text_to_video", json=GEN45)
    assert r.status_code == 400 and "enough credits" in r.json()["error"]


async def test_reset_faults(sim: RunwaySimulator, http: httpx.AsyncClient) -> None:
    sim.faults.add(Fault(route="create", kind="reset"))
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post("/v1/text_to_video", json=GEN45)
    assert (await http.get("/_sim/stats")).json()["tasks"] == 0
    sim.faults.add(Fault(route="create", kind="reset_after_create"))
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post("/v1/text_to_video", json=GEN45)
    assert (await http.get("/_sim/stats")).json()["tasks"] == 1


async def test_slow_and_malformed(sim: RunwaySimulator, http: httpx.AsyncClient) -> None:
    task_id = await create(http)
    sim.faults.add(Fault(route="get_task", kind="slow", delay=0.2))
    start = time.monotonic()
    assert (await http.get(f"/v1/tasks/{task_id}")).status_code == 200
    assert time.monotonic() - start >= 0.2
    sim.faults.add(Fault(route="get_task", kind="malformed_json"))
    r = await http.get(f"/v1/tasks/{task_id}")
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        r.json()


async def test_output_faults(sim: RunwaySimulator, http: httpx.AsyncClient) -> None:
    task_id = await create(http)
    url = await output_url(http, task_id)
    sim.faults.add(Fault(route="output", kind="cut_body", cut_after=1000))
    async with http.stream("GET", url, headers={"Range": "bytes=500-"}) as r:
        assert r.status_code == 206
        got = b""
        with pytest.raises(httpx.RemoteProtocolError):
            async for chunk in r.aiter_bytes():
                got += chunk
    assert got == sim.output_bytes(task_id)[500:1500]
    sim.faults.add(Fault(route="output", kind="expired_url"))
    assert (await http.get(url)).status_code == 403
    assert (await http.get(url)).status_code == 200


async def test_admin_fault_routes(sim: RunwaySimulator, http: httpx.AsyncClient) -> None:
    faults = [
        {"route": "organization", "kind": "status", "status": 504},
        {"route": "get_task", "kind": "slow"},
    ]
    r = await http.post("/_sim/faults", json=faults)
    assert r.status_code == 200 and len(r.json()["pending"]) == 2
    assert (await http.post("/_sim/faults", json=[{"kind": "explode"}])).status_code == 400
    assert (await http.get("/v1/organization")).status_code == 504
    assert (await http.delete("/_sim/faults")).status_code == 204
    assert len(sim.faults) == 0
    stats = (await http.get("/_sim/stats")).json()
    assert stats["requests"]["GET /v1/organization"] == 1 and stats["pendingFaults"] == 0
