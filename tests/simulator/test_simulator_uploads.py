"""The simulator's ephemeral uploads (runway-api.md §2.2): /v1/uploads, its S3-style storage POST, and creates
that name the runway:// URI. The official SDK's create_ephemeral is the oracle for the wire shape."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
from runwayml import AsyncRunwayML
from videogen_server.simulator import Fault, RunwaySimulator

HEADERS = {"Authorization": "Bearer key_test", "X-Runway-Version": "2024-11-06"}  # as conftest.py
ALEPH: dict[str, Any] = {"model": "aleph2", "promptText": "snow", "targetAspectRatio": "16:9"}


async def start(http: httpx.AsyncClient, filename: str = "clip.mp4") -> dict[str, Any]:
    r = await http.post("/v1/uploads", json={"filename": filename, "type": "ephemeral"})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def post_form(
    ticket: dict[str, Any], data: bytes, *, fields_first: bool = True, headers: dict[str, str] | None = None
) -> httpx.Response:
    files: list[tuple[str, Any]] = [(k, (None, v)) for k, v in ticket["fields"].items()]
    part = ("file", ("clip.mp4", data, "video/mp4"))
    files = [*files, part] if fields_first else [part, *files]
    async with httpx.AsyncClient(timeout=10) as plain:  # a storage host: no Runway headers
        return await plain.post(ticket["uploadUrl"], files=files, headers=headers or {})


async def test_start_upload_shape(http: httpx.AsyncClient, sim: RunwaySimulator) -> None:
    ticket = await start(http)
    assert set(ticket) == {"uploadUrl", "fields", "runwayUri"}
    assert ticket["uploadUrl"].startswith(sim.base_url + "/_sim/storage/")
    assert ticket["runwayUri"].startswith("runway://") and 13 <= len(ticket["runwayUri"]) <= 5000
    assert all(isinstance(v, str) for v in ticket["fields"].values()) and "policy" in ticket["fields"]
    assert sim.request_counts[("POST", "/v1/uploads")] == 1


async def test_start_upload_needs_auth_and_valid_body(http: httpx.AsyncClient, sim: RunwaySimulator) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url) as anon:
        r = await anon.post("/v1/uploads", json={"filename": "a.mp4", "type": "ephemeral"})
    assert r.status_code == 401
    r = await http.post("/v1/uploads", json={"filename": "", "type": "permanent"})
    assert r.status_code == 400
    assert {tuple(i["path"]) for i in r.json()["issues"]} == {("filename",), ("type",)}


async def test_stored_upload_resolves_in_a_create(http: httpx.AsyncClient, sim: RunwaySimulator) -> None:
    data = os.urandom(4096)
    ticket = await start(http)
    r = await post_form(ticket, data)
    assert r.status_code == 204, r.text
    created = await http.post("/v1/video_to_video", json={**ALEPH, "videoUri": ticket["runwayUri"]})
    assert created.status_code == 200, created.text
    task_id = created.json()["id"]
    inputs = sim.task_inputs(task_id)
    assert inputs["videoUri"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert inputs["videoUri"]["size"] == len(data)
    over_http = (await http.get(f"/_sim/tasks/{task_id}/inputs")).json()
    assert over_http["inputs"] == inputs
    stats = (await http.get("/_sim/stats")).json()
    assert stats["storage"] == {"requests": 1, "withAuthorization": 0, "withoutContentLength": 0, "stored": 1}


async def test_unknown_unfinished_and_expired_uris_are_400(
    http: httpx.AsyncClient, sim: RunwaySimulator
) -> None:
    ticket = await start(http)  # started, never POSTed: no file behind the URI yet
    for uri in ("runway://uploads/00000000-0000-4000-8000-000000000000", ticket["runwayUri"]):
        r = await http.post("/v1/video_to_video", json={**ALEPH, "videoUri": uri})
        assert r.status_code == 400, r.text
        assert r.json()["issues"][0]["path"] == ["videoUri"]
    assert (await post_form(ticket, os.urandom(1000))).status_code == 204
    assert sim.uploads.expire(ticket["runwayUri"])
    r = await http.post("/v1/video_to_video", json={**ALEPH, "videoUri": ticket["runwayUri"]})
    assert r.status_code == 400 and "expired" in r.json()["issues"][0]["message"]
    assert len(sim._store) == 0  # no task made


async def test_uri_in_prompt_image_list(http: httpx.AsyncClient, sim: RunwaySimulator) -> None:
    ticket = await start(http, "cat.png")
    data = os.urandom(2048)
    assert (await post_form(ticket, data)).status_code == 204
    body = {
        "model": "veo3.1",
        "promptText": "a cat",
        "ratio": "1280:720",
        "promptImage": [{"uri": ticket["runwayUri"], "position": "first"}],
    }
    created = await http.post("/v1/image_to_video", json=body)
    assert created.status_code == 200, created.text
    inputs = sim.task_inputs(created.json()["id"])
    assert inputs["promptImage[0].uri"]["sha256"] == hashlib.sha256(data).hexdigest()


async def test_storage_refuses_authorization_header(http: httpx.AsyncClient, sim: RunwaySimulator) -> None:
    ticket = await start(http)
    r = await post_form(ticket, os.urandom(1000), headers={"Authorization": HEADERS["Authorization"]})
    assert r.status_code == 400
    assert sim.uploads.counts.with_authorization == 1
    assert sim.uploads.resolve(ticket["runwayUri"]) is None


async def test_storage_refuses_chunked_body(http: httpx.AsyncClient) -> None:
    ticket = await start(http)

    async def body() -> AsyncIterator[bytes]:
        yield b"--x\r\n"

    async with httpx.AsyncClient() as plain:
        r = await plain.post(
            ticket["uploadUrl"], content=body(), headers={"Content-Type": "multipart/form-data; boundary=x"}
        )
    assert r.status_code == 411 and "MissingContentLength" in r.text


async def test_storage_wants_fields_before_the_file(http: httpx.AsyncClient, sim: RunwaySimulator) -> None:
    ticket = await start(http)
    r = await post_form(ticket, os.urandom(1000), fields_first=False)
    assert r.status_code == 400 and "order of the fields" in r.text
    assert sim.uploads.resolve(ticket["runwayUri"]) is None


async def test_storage_checks_signature_and_size(http: httpx.AsyncClient, sim: RunwaySimulator) -> None:
    ticket = await start(http)
    forged = {**ticket, "fields": {**ticket["fields"], "x-amz-signature": "0" * 64}}
    assert (await post_form(forged, os.urandom(1000))).status_code == 403
    small = await post_form(ticket, os.urandom(511))
    assert small.status_code == 400 and "EntityTooSmall" in small.text
    assert (await post_form(ticket, os.urandom(512))).status_code == 204
    assert list(sim.uploads.directory().iterdir()) == [sim.uploads.resolve(ticket["runwayUri"]).path]  # type: ignore[union-attr]


async def test_storage_fault(http: httpx.AsyncClient, sim: RunwaySimulator) -> None:
    sim.faults.add(Fault(route="storage", kind="status", status=503))
    ticket = await start(http)
    assert (await post_form(ticket, os.urandom(1000))).status_code == 503
    assert (await post_form(ticket, os.urandom(1000))).status_code == 204


async def test_sdk_create_ephemeral(sim: RunwaySimulator, tmp_path: Any) -> None:
    """The official SDK's two-step upload works against the simulator, and its URI is usable."""
    path = tmp_path / "clip.mp4"
    data = os.urandom(10_000)
    path.write_bytes(data)
    async with AsyncRunwayML(api_key=sim.api_key, base_url=sim.base_url, max_retries=0) as client:
        uploaded = await client.uploads.create_ephemeral(file=path)
        created = await client.video_to_video.create(
            model="aleph2", video_uri=uploaded.uri, prompt_text="snow", target_aspect_ratio="16:9"
        )
    assert sim.task_inputs(created.id)["videoUri"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert sim.uploads.counts.with_authorization == 0


async def test_stop_removes_the_files() -> None:
    simulator = RunwaySimulator(api_key="key_test")
    await simulator.start()
    async with httpx.AsyncClient(base_url=simulator.base_url, headers=HEADERS) as c:
        ticket = await start(c)
        assert (await post_form(ticket, os.urandom(1000))).status_code == 204
    directory = simulator.uploads.directory()
    assert any(directory.iterdir())
    await simulator.stop()
    assert not directory.exists()


async def test_an_upload_is_its_organizations_only(http: httpx.AsyncClient, sim: RunwaySimulator) -> None:
    """As on Runway: a runway:// URI uploaded with one key's organization does not exist for another's."""
    other = "key_" + "b2" * 32
    sim.add_key("b", other)
    data = os.urandom(4096)
    ticket = await start(http)  # with the default key
    assert (await post_form(ticket, data)).status_code == 204
    b_headers = {**HEADERS, "Authorization": f"Bearer {other}"}
    refused = await http.post(
        "/v1/video_to_video", json={**ALEPH, "videoUri": ticket["runwayUri"]}, headers=b_headers
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["issues"][0]["path"] == ["videoUri"]
    assert sum(len(a.store) for a in sim.accounts) == 0  # no task
    mine = await http.post("/v1/video_to_video", json={**ALEPH, "videoUri": ticket["runwayUri"]})
    assert mine.status_code == 200, mine.text
    # And the other way: b's upload is b's.
    on_b = sim.uploads.put("b.png", b"\x89PNG" + bytes(1000), account="b").uri
    gen4 = {"model": "gen4_turbo", "promptImage": on_b, "ratio": "1280:720", "duration": 5}
    assert (await http.post("/v1/image_to_video", json=gen4)).status_code == 400
    assert (await http.post("/v1/image_to_video", json=gen4, headers=b_headers)).status_code == 200
