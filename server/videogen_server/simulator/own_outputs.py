"""Runway's own output URLs as create inputs (Remix sends a finished task's output URL as ``videoUri``).

Runway fetches an asset URL itself, so its own (CDN) output URLs work as inputs. The simulator's output URLs
are ``http://127.0.0.1:PORT/_sim/outputs/{task}/{index}.mp4?_jwt=...``, which the asset rules (assets.py:
https on a domain name) would refuse; so a create's body is read first for URLs of this simulator's own
outputs: one with a valid, unexpired signature for a SUCCEEDED task is accepted (it is swapped for a
well-formed stand-in while the body is validated), anything else under that path is Runway's 400 for an
asset it cannot fetch. What the task received is recorded like an upload's (``Task.inputs``): the SHA-256 of
the bytes that URL serves, so a test can prove which video a remix was made from.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from videogen_server.simulator.media import OutputMedia
from videogen_server.simulator.signing import UrlSigner
from videogen_server.simulator.tasks import Task
from videogen_server.simulator.uploads import render
from videogen_server.simulator.validation import validation_failed_body

_PREFIX = "/_sim/outputs/"
_HASH_CHUNK = 1024 * 1024


def _strings(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, (*path, i))


def _replace(value: Any, path: tuple[str | int, ...], new: str) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: _replace(v, rest, new) if k == head else v for k, v in value.items()}
    return [_replace(v, rest, new) if i == head else v for i, v in enumerate(value)]


def _sha256(media: OutputMedia) -> str:
    digest = hashlib.sha256()
    for chunk in media.iter_range(0, media.size, _HASH_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


async def resolve_own_outputs(
    origin: str,
    signer: UrlSigner,
    find: Callable[[str], Task | None],
    status: Callable[[Task], str],
    body: Any,
) -> tuple[Any, dict[str, dict[str, Any]]] | web.Response:
    """`find` looks a task up in every key's organization (a signed output URL is the CDN's, not a key's);
    `status` is its current status.
    ``(body with each own output URL swapped for a stand-in, {field path: {uri, sha256, size, task}})``, or
    Runway's 400 naming the fields whose URL does not work (bad or expired signature, task gone)."""
    found: dict[str, dict[str, Any]] = {}
    issues: list[dict[str, Any]] = []
    for path, value in list(_strings(body)):
        if not value.startswith(origin + _PREFIX):
            continue
        parts = urlsplit(value)
        task_id, _, name = parts.path[len(_PREFIX) :].partition("/")
        index_text = name.removesuffix(".mp4")
        claims = signer.verify(parse_qs(parts.query).get("_jwt", [""])[0])
        task = find(task_id)
        if (
            claims is None
            or not index_text.isdigit()
            or (claims.task_id, claims.index) != (task_id, int(index_text))
            or claims.expires_at <= time.time()
            or task is None
            or status(task) != "SUCCEEDED"
        ):
            message = "Invalid asset: the URL could not be fetched (expired, or no such output)"
            issues.append({"code": "custom", "path": list(path), "message": message})
            continue
        media = OutputMedia(task.id, claims.index, task.output_size)
        sha256 = await asyncio.to_thread(_sha256, media)
        found[render(path)] = {"uri": value, "sha256": sha256, "size": media.size, "task": task.id}
        body = _replace(body, path, f"https://outputs.simulator.invalid/{task.id}/{claims.index}.mp4")
    if issues:
        return web.json_response(validation_failed_body(issues), status=400)
    return body, found
