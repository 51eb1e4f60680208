"""Runway's ephemeral uploads (runway-api.md §2.2): ``POST /v1/uploads`` hands out a presigned S3-style form
POST on the simulator itself (``/_sim/storage/{id}``), the storage keeps the bytes on disk (uploads go up to
200 MB: never in memory), and a later create may name the ``runway://`` URI in any asset field.

The storage behaves like S3's browser-based POST, the way Runway's presigned URLs do: multipart/form-data
whose signed fields come BEFORE the ``file`` part (S3 ignores fields after it), an explicit Content-Length
(a chunked body is 411 MissingContentLength), a policy that expires and bounds the size (512 B..200 MB),
204 on success, XML errors. Unlike S3 it refuses (and counts) an ``Authorization`` header: our gateway must
never send its Runway key to a storage host, and tests assert that none ever arrived.

For tests, every create records the SHA-256 of each uploaded file it received as input (``Task.inputs``),
so a test can prove that the bytes Runway got are the caller's.

An upload belongs to the organization (the account: accounts.py) of the key that started it, as on Runway:
a create with another organization's key that names its runway:// URI is refused like an unknown one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final
from xml.sax.saxutils import escape

from aiohttp import BodyPartReader, web

from videogen_server.simulator.accounts import DEFAULT_ACCOUNT
from videogen_server.simulator.validation import validation_failed_body

MIN_SIZE: Final = 512
MAX_SIZE: Final = 200 * 1000 * 1000  # "200 MB"
FILENAME_MAX: Final = 255
POLICY_TTL: Final = 3600.0  # seconds a presigned POST stays usable
URI_PREFIX: Final = "runway://uploads/"
CHUNK: Final = 256 * 1024
FIELD_MAX: Final = 64 * 1024  # a form field's value is a few hundred bytes; never buffer more
# Multipart framing around the file (boundaries, part headers, the fields): Content-Length above
# MAX_SIZE + this is refused before a byte is read, as S3 refuses it by the policy's content-length-range.
_FRAMING_SLACK: Final = 64 * 1024


@dataclass
class PendingUpload:
    """A started upload: its presigned form fields, until the storage POST completes it."""

    id: str
    filename: str
    fields: dict[str, str]
    policy_expires: float  # time.time()
    account: str = DEFAULT_ACCOUNT  # the organization whose key started it


@dataclass
class StoredUpload:
    """A completed upload: the file on disk and what a create naming its URI receives."""

    uri: str
    filename: str
    path: Path
    size: int
    sha256: str
    expires: float  # time.time()
    account: str = DEFAULT_ACCOUNT  # the organization that owns it: only its keys can use the URI


@dataclass
class StorageCounts:
    requests: int = 0
    with_authorization: int = 0
    without_content_length: int = 0
    stored: int = 0

    def to_json(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "withAuthorization": self.with_authorization,
            "withoutContentLength": self.without_content_length,
            "stored": self.stored,
        }


@dataclass
class UploadStore:
    """Started and completed uploads; files live in a private temp dir removed by ``close``."""

    upload_ttl: float = 86400.0
    counts: StorageCounts = field(default_factory=StorageCounts)
    _secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _pending: dict[str, PendingUpload] = field(default_factory=dict)
    _stored: dict[str, StoredUpload] = field(default_factory=dict)
    _dir: Path | None = None

    def directory(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="videogen-sim-uploads-"))
        return self._dir

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._pending.clear()
        self._stored.clear()

    # --- POST /v1/uploads ----------------------------------------------------------------------

    def start(self, filename: str, account: str = DEFAULT_ACCOUNT) -> PendingUpload:
        self._sweep()
        upload_id = str(uuid.uuid4())
        expires = time.time() + POLICY_TTL
        key = f"uploads/{upload_id}/{filename}"
        policy = {
            "expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
            "conditions": [
                {"bucket": "runway-sim-uploads"},
                ["eq", "$key", key],
                ["content-length-range", MIN_SIZE, MAX_SIZE],
            ],
        }
        encoded = base64.b64encode(json.dumps(policy).encode()).decode()
        fields = {
            "key": key,
            "x-amz-algorithm": "AWS4-HMAC-SHA256",
            "x-amz-credential": "SIMULATOR/20240101/us-east-1/s3/aws4_request",
            "x-amz-date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
            "policy": encoded,
            "x-amz-signature": hmac.new(self._secret, encoded.encode(), hashlib.sha256).hexdigest(),
        }
        pending = PendingUpload(upload_id, filename, fields, expires, account)
        self._pending[upload_id] = pending
        return pending

    def uri_of(self, upload_id: str) -> str:
        return URI_PREFIX + upload_id

    # --- the storage POST ----------------------------------------------------------------------

    def pending(self, upload_id: str) -> PendingUpload | None:
        return self._pending.get(upload_id)

    def signature_ok(self, pending: PendingUpload, fields: dict[str, str]) -> bool:
        policy = fields.get("policy", "")
        expected = hmac.new(self._secret, policy.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, fields.get("x-amz-signature", "")) and all(
            fields.get(k) == v for k, v in pending.fields.items()
        )

    def complete(self, pending: PendingUpload, path: Path, size: int, sha256: str) -> StoredUpload:
        uri = self.uri_of(pending.id)
        old = self._stored.pop(uri, None)  # a second POST to the same presigned URL overwrites, like S3
        if old is not None and old.path != path:
            old.path.unlink(missing_ok=True)
        stored = StoredUpload(
            uri, pending.filename, path, size, sha256, time.time() + self.upload_ttl, pending.account
        )
        self._stored[uri] = stored
        self.counts.stored += 1
        return stored

    def put(self, filename: str, data: bytes, account: str = DEFAULT_ACCOUNT) -> StoredUpload:
        """Test hook: store `data` as if uploaded through the two steps with `account`'s key (no requests
        counted). Blocking file I/O: for tests' small files only."""
        pending = self.start(filename, account)
        del self._pending[pending.id]
        fd, name = tempfile.mkstemp(dir=self.directory(), suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self.counts.stored -= 1  # complete() counts storage POSTs; this was none
        return self.complete(pending, Path(name), len(data), hashlib.sha256(data).hexdigest())

    # --- creates naming runway:// URIs ---------------------------------------------------------

    def resolve(self, uri: str) -> StoredUpload | None:
        """The stored upload of `uri`, whichever organization owns it (`resolve_inputs` checks that)."""
        stored = self._stored.get(uri)
        if stored is None or stored.expires <= time.time():
            return None
        return stored

    def expire(self, uri: str) -> bool:
        """Test hook: make a stored upload's URI expire now. False when unknown."""
        stored = self._stored.get(uri)
        if stored is None:
            return False
        stored.expires = time.time()
        return True

    def _sweep(self) -> None:
        now = time.time()
        for uri in [u for u, s in self._stored.items() if s.expires <= now]:
            self._stored.pop(uri).path.unlink(missing_ok=True)
        for upload_id in [i for i, p in self._pending.items() if p.policy_expires <= now]:
            del self._pending[upload_id]


# --- create inputs -------------------------------------------------------------------------------


def _runway_uris(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        if value.startswith("runway://"):
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _runway_uris(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _runway_uris(item, (*path, i))


def render(path: tuple[str | int, ...]) -> str:
    """``("promptImage", 0, "uri")`` -> ``promptImage[0].uri``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def resolve_inputs(
    store: UploadStore, body: dict[str, Any], account: str = DEFAULT_ACCOUNT
) -> dict[str, dict[str, Any]] | web.Response:
    """Every runway:// URI in a create body, resolved to its stored upload: ``{path: {uri, sha256, size,
    filename}}``; or Runway's 400 naming the fields whose upload does not exist, has expired, or belongs
    to another organization than `account` (the create's key): to that organization it does not exist."""
    found: dict[str, dict[str, Any]] = {}
    issues: list[dict[str, Any]] = []
    for path, uri in _runway_uris(body):
        stored = store.resolve(uri)
        if stored is None or stored.account != account:
            issues.append(
                {
                    "code": "custom",
                    "path": list(path),
                    "message": "Invalid asset: the runway:// upload does not exist or has expired",
                }
            )
            continue
        found[render(path)] = {
            "uri": uri,
            "sha256": stored.sha256,
            "size": stored.size,
            "filename": stored.filename,
        }
    if issues:
        return web.json_response(validation_failed_body(issues), status=400)
    return found


# --- the storage handler ---------------------------------------------------------------------------


def s3_error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


async def _field_value(part: BodyPartReader) -> str | None:
    data = bytearray()
    while chunk := await part.read_chunk(4096):
        data += chunk
        if len(data) > FIELD_MAX:
            return None
    return data.decode("utf-8", errors="replace")


def _open_spool(directory: Path) -> tuple[IO[bytes], Path]:
    fd, name = tempfile.mkstemp(dir=directory, suffix=".part")
    return os.fdopen(fd, "wb"), Path(name)


async def receive(store: UploadStore, request: web.Request, upload_id: str) -> web.Response:
    """The storage POST (auth, faults and counting are the caller's)."""
    if request.content_length is None:
        store.counts.without_content_length += 1
        return s3_error(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
    if request.content_length > MAX_SIZE + _FRAMING_SLACK:
        return s3_error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
    if not request.content_type.startswith("multipart/form-data"):
        return s3_error(
            412, "PreconditionFailed", "Bucket POST must be of the enclosure-type multipart/form-data"
        )
    pending = store.pending(upload_id)
    if pending is None:
        return s3_error(403, "AccessDenied", "Invalid according to Policy: no such upload")
    reader = await request.multipart()
    fields: dict[str, str] = {}
    file_part: BodyPartReader | None = None
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            return s3_error(400, "MalformedPOSTRequest", "Nested multipart is not supported")
        if part.name == "file":
            file_part = part
            break
        value = await _field_value(part)
        if value is None or part.name is None:
            return s3_error(400, "MalformedPOSTRequest", "A form field is malformed or too large")
        fields[part.name.lower()] = value
    for name in pending.fields:
        if name not in fields:
            # S3's words: fields after the file part are ignored, so a field sent late is a missing one.
            return s3_error(
                400,
                "InvalidArgument",
                f"Bucket POST must contain a field named '{name}'.  If it is specified, please check the "
                "order of the fields.",
            )
    if file_part is None:
        return s3_error(400, "InvalidArgument", "POST requires exactly one file upload per request.")
    if not store.signature_ok(pending, fields):
        return s3_error(403, "AccessDenied", "Invalid according to Policy: Policy Condition failed")
    if pending.policy_expires <= time.time():
        return s3_error(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    return await _spool_file(store, pending, file_part)


async def _spool_file(store: UploadStore, pending: PendingUpload, part: BodyPartReader) -> web.Response:
    out, path = await asyncio.to_thread(_open_spool, store.directory())
    digest = hashlib.sha256()
    size = 0
    kept = False
    try:
        while chunk := await part.read_chunk(CHUNK):
            size += len(chunk)
            if size > MAX_SIZE:
                return s3_error(
                    400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size"
                )
            digest.update(chunk)
            await asyncio.to_thread(out.write, chunk)
        await asyncio.to_thread(out.close)
        if size < MIN_SIZE:
            return s3_error(
                400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size"
            )
        store.complete(pending, path, size, digest.hexdigest())
        kept = True
        return web.Response(status=204)
    finally:
        if not out.closed:
            await asyncio.to_thread(out.close)
        if not kept:
            await asyncio.to_thread(path.unlink, True)
