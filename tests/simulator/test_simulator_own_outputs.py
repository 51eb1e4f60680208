"""The simulator takes its own output URLs as a create's video input (Runway fetches its own CDN URLs; Remix
sends them) and records the SHA-256 of the bytes that URL serves; a tampered, expired or gone one is Runway's
400 for an asset it cannot fetch, and a foreign http:// URL is still refused by the asset rules."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
from videogen_server.simulator import RunwaySimulator

GEN45_T2V: dict[str, Any] = {"model": "gen4.5", "promptText": "a red fox", "ratio": "1280:720", "duration": 5}
ALEPH: dict[str, Any] = {"model": "aleph2", "promptText": "snow", "targetAspectRatio": "16:9"}


async def finished_output_url(http: httpx.AsyncClient, sim: RunwaySimulator) -> tuple[str, str]:
    task_id = (await http.post("/v1/text_to_video", json=GEN45_T2V)).json()["id"]
    async with asyncio.timeout(10):
        while True:  # the simulator's clock: polled, as a client of Runway would
            if sim.task_status(task_id) == "SUCCEEDED":
                break
            await asyncio.sleep(0.02)
    url: str = (await http.get(f"/v1/tasks/{task_id}")).json()["output"][0]
    return task_id, url


async def test_its_own_output_url_is_accepted_and_what_the_task_received_is_recorded(
    http: httpx.AsyncClient, sim: RunwaySimulator
) -> None:
    source, url = await finished_output_url(http, sim)
    assert url.startswith("http://127.0.0.1:")
    created = await http.post("/v1/video_to_video", json={**ALEPH, "videoUri": url})
    assert created.status_code == 200, created.text
    got = sim.task_inputs(created.json()["id"])["videoUri"]
    assert got["sha256"] == hashlib.sha256(sim.output_bytes(source)).hexdigest()
    assert got["uri"] == url and got["task"] == source


async def test_a_url_it_cannot_serve_is_refused(http: httpx.AsyncClient, sim: RunwaySimulator) -> None:
    source, url = await finished_output_url(http, sim)
    tampered = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    other_task = url.replace(source, "00000000-0000-4000-8000-000000000000")
    foreign = "http://127.0.0.1:9/_sim/outputs/x/0.mp4"
    for bad in (tampered, other_task, foreign):
        r = await http.post("/v1/video_to_video", json={**ALEPH, "videoUri": bad})
        assert r.status_code == 400, (bad, r.text)
        assert [i["path"] for i in r.json()["issues"]] == [["videoUri"]], r.text
    assert sim.forget_task(source)
    r = await http.post("/v1/video_to_video", json={**ALEPH, "videoUri": url})
    assert r.status_code == 400 and "could not be fetched" in r.text
