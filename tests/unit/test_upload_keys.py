"""Uploads pinned to their key (issue 12; services/upload_keys.py), on the shipped fakes: the Upload use case
keeps which key uploaded each file, and a Generate naming our uploads is created with that key only; uploads
from two keys are INVALID_ARGUMENT before anything is stored or sent; a Generate without runway:// URIs makes
no extra store call. End to end on the simulator with two keys: tests/integration/test_upload_keys.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from videogen_server import errors
from videogen_server.domain.clock import utcnow
from videogen_server.domain.generation import GenerateSpec, MediaRef
from videogen_server.providers.memory import MemoryProvider
from videogen_server.services.tracker import TaskTracker
from videogen_server.services.upload_keys import UploadKeys, runway_uris
from videogen_server.services.uploads import MAX_UPLOAD_BYTES, UploadPart, Uploads
from videogen_server.services.videos import Videos
from videogen_server.store import MemoryVideoStore
from videogen_server.store.local_coordinator import LocalCoordinator

PNG = b"\x89PNG\r\n\x1a\n" + bytes(2000)
OWNER = "alice"


class CountingStore(MemoryVideoStore):
    """The memory store, counting `upload_key` lookups."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    async def upload_key(self, uri: str) -> str | None:
        self.lookups += 1
        return await super().upload_key(uri)


@dataclass
class World:
    store: CountingStore
    provider: MemoryProvider
    uploads: Uploads
    videos: Videos

    async def upload(self, key: str) -> str:
        """A file uploaded through the Upload use case, which the "pool" puts on `key`."""
        self.provider.upload_as = key
        result = await self.uploads.upload(_parts(PNG))
        assert result.key == key
        return result.uri

    async def generate(self, **fields: object) -> str:
        """A Generate's video; returns the key its create named (None: the pool's choice)."""
        spec = GenerateSpec(model="any-model", prompt="a kite", **fields)  # type: ignore[arg-type]
        record = await self.videos.generate(OWNER, spec, deadline=None)
        key = self.provider.create_keys[record.upstream_id]
        assert record.runway_key == (key or "default")
        return str(key)


async def _parts(data: bytes) -> AsyncIterator[UploadPart]:
    yield UploadPart(data=data, filename="frame.png")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = CountingStore()
    await store.open()
    provider = MemoryProvider()
    coordinator = LocalCoordinator()
    await coordinator.open()
    tracker = TaskTracker(
        store,
        lambda record, deadline: provider.get_task(record.upstream_id, key=record.runway_key),
        coordinator=coordinator,
        poll_interval=0.05,
        freshness=1.0,
    )
    uploads = Uploads(provider, tmp_path / "spool", spool_limit=MAX_UPLOAD_BYTES, keys=UploadKeys(store))
    try:
        yield World(store, provider, uploads, Videos(store, provider, tracker))
    finally:
        await tracker.close()
        await coordinator.close()
        await store.close()


def test_every_runway_uri_of_a_spec_is_found_with_its_field() -> None:
    spec = GenerateSpec(
        model="m",
        input_reference="runway://a",
        video_uri="https://example.com/v.mp4",
        references=(MediaRef("https://example.com/x.png"), MediaRef("runway://b", tag="b")),
        reference_images=(MediaRef("runway://c"),),
        provider_options={"contentModeration": {"x": ["data:,", "runway://d"]}, "n": 3},
    )
    assert runway_uris(spec) == [
        ("input_reference", "runway://a"),
        ("references[1].uri", "runway://b"),
        ("reference_images[0].uri", "runway://c"),
        ("provider_options.contentModeration.x[1]", "runway://d"),
    ]


async def test_an_upload_keeps_its_key_and_a_generate_naming_it_is_created_with_that_key(
    world: World,
) -> None:
    uri = await world.upload("b")
    assert await world.store.upload_key(uri) == "b"
    assert await world.generate(input_reference=uri) == "b"
    assert await world.generate(references=(MediaRef("https://example.com/x.png"), MediaRef(uri))) == "b"
    assert await world.generate(provider_options={"promptImage": [{"uri": uri}]}) == "b"


async def test_uploads_of_one_key_named_twice_pin_to_it_with_one_lookup_each(world: World) -> None:
    first, second = await world.upload("a"), await world.upload("a")
    refs = (MediaRef(first), MediaRef(second), MediaRef(first))
    assert await world.generate(input_reference=first, reference_images=refs) == "a"
    assert world.store.lookups == 2  # distinct URIs only


async def test_a_generate_without_runway_uris_makes_no_lookup_and_lets_the_pool_choose(world: World) -> None:
    assert await world.generate(input_reference="https://example.com/a.png") == "None"
    assert await world.generate() == "None"
    assert world.store.lookups == 0


async def test_runway_uris_not_ours_or_expired_let_the_pool_choose(world: World) -> None:
    expired = "runway://uploads/expired"
    await world.store.save_upload(expired, "b", utcnow() - timedelta(seconds=1))
    assert (
        await world.generate(input_reference="runway://uploads/elsewhere", references=(MediaRef(expired),))
        == "None"
    )
    assert world.store.lookups == 2
    # Ours beside one that is not: pinned to ours.
    uri = await world.upload("b")
    assert (
        await world.generate(input_reference="runway://uploads/elsewhere", reference_images=(MediaRef(uri),))
        == "b"
    )


async def test_uploads_from_two_keys_are_invalid_argument_naming_the_fields_before_any_claim(
    world: World,
) -> None:
    on_a, on_b = await world.upload("a"), await world.upload("b")
    spec = GenerateSpec(
        model="m", prompt="p", input_reference=on_a, references=(MediaRef(on_b),), request_id="r1"
    )
    with pytest.raises(errors.InvalidArgument) as info:
        await world.videos.generate(OWNER, spec, deadline=None)
    error = info.value
    assert error.reason == "UPLOADS_ON_DIFFERENT_KEYS"
    assert [v.field for v in error.violations] == ["input_reference", "references[0].uri"]
    assert (
        "'a'" in error.message and "'b'" in error.message and "upload them again in one go" in error.message
    )
    assert world.provider.calls["create"] == 0
    assert await world.store.list_unfinished() == []  # nothing claimed: the request_id is still free


async def test_the_pinned_key_out_of_credits_says_the_uploads_hold_the_video_to_it(world: World) -> None:
    uri = await world.upload("b")
    world.provider.fail_next("create", errors.UpstreamCredits("You do not have enough credits."))
    with pytest.raises(errors.UpstreamCredits) as info:
        await world.generate(input_reference=uri, request_id="r2")
    message = info.value.message
    assert "input_reference" in message and "Runway key 'b'" in message and "enough credits" in message
    assert info.value.metadata["runway_key"] == "b"
    assert await world.store.list_unfinished() == []  # no task: the request_id can be retried


async def test_the_pinned_key_removed_from_the_configuration_says_so(world: World) -> None:
    uri = await world.upload("gone")
    world.provider.fail_next(
        "create",
        errors.FailedPrecondition(
            "the video was made with Runway key 'gone'", reason="RUNWAY_KEY_NOT_CONFIGURED"
        ),
    )
    with pytest.raises(errors.FailedPrecondition) as info:
        await world.generate(video_uri=uri)
    assert info.value.reason == "RUNWAY_KEY_NOT_CONFIGURED"
    assert "uploaded file in video_uri" in info.value.message and "not configured" in info.value.message
    assert "upload the files again" in info.value.message


async def test_a_failed_store_write_fails_the_upload(world: World) -> None:
    async def down(uri: str, key: str, expire_time: object) -> None:
        raise errors.StoreUnavailable("store down")

    world.store.save_upload = down  # type: ignore[method-assign,assignment]
    with pytest.raises(errors.StoreUnavailable):
        await world.uploads.upload(_parts(PNG))
