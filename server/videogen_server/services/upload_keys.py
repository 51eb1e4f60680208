"""Uploads pinned to their provider key (issue 12).

A file uploaded with Upload lives in the account of the Runway key that uploaded it (with several keys,
possibly another organization than the next key's): Runway refuses a create that names another account's
runway:// URI. So the key of every upload is kept in the store for the URI's lifetime (fleet-wide: the
Generate may land on another replica), and a Generate naming URIs we uploaded is created with their key:

- none of its runway:// URIs is ours (none at all, uploaded elsewhere, or expired): the pool chooses, as
  for any Generate, and no store call is made when the request names no runway:// URI;
- all ours from one key: created with that key only. No failover to another key (the files are not
  there); when that key is out, the error says that the uploads hold the video to it;
- ours from two or more keys: INVALID_ARGUMENT naming the fields, before anything is stored or sent: no
  key can use them all, so the caller uploads them again in one go (the pool then picks one key for all).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from videogen_server import errors
from videogen_server.domain.generation import GenerateSpec
from videogen_server.domain.task import UpstreamRequest
from videogen_server.services.ports import TaskRef, UploadedAsset, VideoProvider, VideoStore

RUNWAY_SCHEME: Final = "runway://"


@dataclass(frozen=True)
class Pin:
    """The key a Generate must be created with, and the request fields whose uploads demand it."""

    key: str
    fields: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"the uploaded file{'s' if len(self.fields) > 1 else ''} in {', '.join(self.fields)} "
            f"belong{'' if len(self.fields) > 1 else 's'} to Runway key {self.key!r} (an upload can only be "
            "used by the key that uploaded it)"
        )


def runway_uris(spec: GenerateSpec) -> list[tuple[str, str]]:
    """(field, URI) for every runway:// URI `spec` names, fields as in error details (snake_case, with
    list indexes): input_reference, video_uri, references[i].uri, reference_images[i].uri, and any string
    inside provider_options (provider_options.<path>)."""
    found = [
        (name, uri)
        for name, uri in (("input_reference", spec.input_reference), ("video_uri", spec.video_uri))
        if uri.startswith(RUNWAY_SCHEME)
    ]
    for name, refs in (("references", spec.references), ("reference_images", spec.reference_images)):
        found += [(f"{name}[{i}].uri", r.uri) for i, r in enumerate(refs) if r.uri.startswith(RUNWAY_SCHEME)]
    found += list(_option_uris(spec.provider_options, "provider_options"))
    return found


def _option_uris(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        if value.startswith(RUNWAY_SCHEME):
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _option_uris(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _option_uris(item, f"{path}[{i}]")


class UploadKeys:
    """The rule of the module docstring, over the store's `save_upload` / `upload_key`."""

    def __init__(self, store: VideoStore) -> None:
        self._store = store

    async def remember(self, asset: UploadedAsset) -> None:
        """Keep which key uploaded `asset`, until it expires. Raises StoreUnavailable when the store cannot
        be written: the Upload then fails (retryable) rather than hand out a URI that a Generate on another
        key would be refused."""
        await self._store.save_upload(asset.uri, asset.key, asset.expire_time)

    async def pin(self, spec: GenerateSpec) -> Pin | None:
        """The key `spec` must be created with (None: any, the pool chooses). InvalidArgument when its
        uploads came through different keys. No store call when `spec` names no runway:// URI."""
        named = runway_uris(spec)
        if not named:
            return None
        distinct = list(dict.fromkeys(uri for _, uri in named))
        keys = await asyncio.gather(*(self._store.upload_key(uri) for uri in distinct))
        key_of = dict(zip(distinct, keys, strict=True))
        fields_by_key: dict[str, list[str]] = {}
        for name, uri in named:
            key = key_of[uri]
            if key is not None:
                fields_by_key.setdefault(key, []).append(name)
        if not fields_by_key:
            return None
        if len(fields_by_key) > 1:
            raise _mixed(fields_by_key)
        ((key, fields),) = fields_by_key.items()
        return Pin(key, tuple(fields))

    @staticmethod
    async def create(
        provider: VideoProvider, plan: UpstreamRequest, pin: Pin | None, *, deadline: float | None
    ) -> TaskRef:
        """`provider.create`, with the pinned key if any; when that key cannot take it (no credits, its
        daily cap, no longer configured) the error says the uploads hold the video to that key."""
        if pin is None:
            return await provider.create(plan, deadline=deadline)
        try:
            return await provider.create(plan, key=pin.key, deadline=deadline)
        except errors.FailedPrecondition as exc:
            if exc.reason != "RUNWAY_KEY_NOT_CONFIGURED":
                raise
            raise errors.FailedPrecondition(
                f"{pin.describe()}, which is not configured any more: upload the files again",
                reason=exc.reason,
                metadata={"runway_key": pin.key},
            ) from exc
        except (errors.UpstreamCredits, errors.UpstreamUnavailable) as exc:
            if errors.key_refused_create(exc):  # the key is out: say why no other key was tried (same code)
                exc.message = f"{pin.describe()}, and that key cannot take the task now: {exc.message}"
                exc.args = (exc.message,)
                exc.metadata.setdefault("runway_key", pin.key)
            raise


def _mixed(fields_by_key: dict[str, list[str]]) -> errors.InvalidArgument:
    groups = "; ".join(f"{', '.join(fields)} through key {key!r}" for key, fields in fields_by_key.items())
    violations = [
        errors.FieldViolation(
            name,
            f"uploaded through Runway key {key!r}, other files of this request through another key; "
            "upload them again in one go",
        )
        for key, fields in fields_by_key.items()
        for name in fields
    ]
    return errors.InvalidArgument(
        f"the files of this request were uploaded through different Runway keys ({groups}); upload them "
        "again in one go (an upload can only be used by the key that uploaded it)",
        violations,
        reason="UPLOADS_ON_DIFFERENT_KEYS",
    )
