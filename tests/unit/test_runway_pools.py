"""RunwayProvider keeps API calls (RunwayClient) and output downloads (OutputDownloads) on separate HTTP
clients (issue 8, item 3)."""

from __future__ import annotations

import httpx
import pytest
from videogen_server.providers.runway import RetryPolicy, RunwayProvider

KEY = "key_" + "cd34" * 32
BASE = "https://api.example.test"
TID = "0b6c9f6e-2b7d-4c1e-9d6e-3f1a2b3c4d5e"
OUT = "https://cdn.other.test/out.mp4?_jwt=signed"
FAST = RetryPolicy(base_delay=0.001, max_delay=0.01)


class Recorder:
    """A mock transport's handler that remembers the requests it answered."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.response


async def test_injected_clients_split_api_calls_from_downloads() -> None:
    api = Recorder(
        httpx.Response(200, json={"id": TID, "status": "RUNNING", "createdAt": "2026-08-11T06:12:01Z"})
    )
    cdn = Recorder(httpx.Response(200, content=b"video"))
    client = RunwayProvider.connect(
        BASE,
        KEY,
        retry=FAST,
        http=httpx.AsyncClient(transport=httpx.MockTransport(api)),
        downloads=httpx.AsyncClient(transport=httpx.MockTransport(cdn)),
    )
    await client.get_task(TID)
    async with client.open_output(OUT) as out:
        assert b"".join([c async for c in out.iter_chunks(1024)]) == b"video"
    assert [r.url.path for r in api.requests] == [f"/v1/tasks/{TID}"]
    assert [str(r.url) for r in cdn.requests] == [OUT]
    assert "authorization" not in cdn.requests[0].headers


async def test_own_pools_are_separate_sized_and_closed() -> None:
    client = RunwayProvider.connect(BASE, KEY, max_downloads=7)
    api, downloads = client._api._http, client._downloads._http
    assert api is not downloads
    # The download pool is sized to the stream limit; the API pool keeps its own size.
    assert downloads._transport._pool._max_connections == 7  # type: ignore[attr-defined]
    assert api._transport._pool._max_connections == 100  # type: ignore[attr-defined]
    await client.aclose()
    assert api.is_closed and downloads.is_closed


async def test_injected_client_is_not_closed_and_serves_both() -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(Recorder(httpx.Response(200))))
    client = RunwayProvider.connect(BASE, KEY, http=http)
    assert client._downloads._http is http
    await client.aclose()
    assert not http.is_closed
    await http.aclose()


def test_download_pool_needs_a_size() -> None:
    with pytest.raises(ValueError, match="max_downloads"):
        RunwayProvider.connect(BASE, KEY, max_downloads=0)
