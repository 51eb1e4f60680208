"""The small domain modules: one fingerprint, one time format, one UUID check, and no transport imports."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pkgutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
import videogen_server.domain
from videogen_server.domain.clock import format_time, parse_time, utcnow
from videogen_server.domain.generation import GenerateSpec, MediaRef
from videogen_server.domain.ids import is_canonical_uuid, parse_uuid

# -- fingerprint ---------------------------------------------------------------------------------------

# Digests made by the previous implementation (records.fingerprint): stored records carry them, so a
# retry of an old request must still match.
GOLDEN = [
    (
        GenerateSpec(model="gen4.5", prompt="a paper boat", seconds=5),
        "1a813be09784131ae7263c3850b2767ea7f1b0cf0a718274e7a301f1c6f8338b",
    ),
    (
        GenerateSpec(
            model="gen4_aleph",
            prompt="é ü 漢",
            video_uri="https://example.com/in.mp4",
            references=(MediaRef("https://example.com/a.png", "hero"), MediaRef("https://example.com/b.png")),
            reference_images=(MediaRef("https://example.com/c.png", "bg"),),
            seed=3,
            audio=True,
            size="1280:720",
            public_figure_threshold="low",
            provider_options={"z": [1, 2.5, {"a": None, "b": [True]}], "a": {"y": "x"}},
            request_id="r-9",
        ),
        "634a77a6069e6cdf0f485b6b7a8fa95508ea64635c142e09153df708fe9c8c76",
    ),
]


@pytest.mark.parametrize(("spec", "digest"), GOLDEN)
def test_fingerprint_digests_are_unchanged(spec: GenerateSpec, digest: str) -> None:
    assert spec.fingerprint() == digest


@pytest.mark.parametrize(("spec", "_digest"), GOLDEN)
def test_fingerprint_fields_serialize_as_asdict_does(spec: GenerateSpec, _digest: str) -> None:
    by_asdict = dataclasses.asdict(spec)
    del by_asdict["request_id"]
    fields = spec.fingerprint_fields()
    assert json.dumps(fields, sort_keys=True) == json.dumps(by_asdict, sort_keys=True)
    canonical = json.dumps(by_asdict, sort_keys=True, separators=(",", ":"))
    assert spec.fingerprint() == hashlib.sha256(canonical.encode()).hexdigest()


# -- time ----------------------------------------------------------------------------------------------


def test_format_and_parse_time() -> None:
    t = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert format_time(t) == "2025-01-02T03:04:05.123456+00:00"
    assert parse_time(format_time(t)) == t
    plus_one = t.astimezone(timezone(timedelta(hours=1)))
    assert format_time(plus_one) == format_time(t)  # the same instant, written in UTC
    assert format_time(t.replace(tzinfo=None)) == format_time(t)  # naive is UTC


def test_parse_time_reads_runway_and_naive_times_as_aware() -> None:
    assert parse_time("2026-08-11T06:12:01.171Z") == datetime(2026, 8, 11, 6, 12, 1, 171000, tzinfo=UTC)
    assert parse_time("2025-01-01T00:00:00") == datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "yesterday", "2025-13-01T00:00:00Z", "2025-01-01T25:00"])
def test_parse_time_refuses_what_is_not_iso_8601(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_utcnow_is_aware_utc() -> None:
    assert utcnow().utcoffset() == timedelta(0)


# -- ids -----------------------------------------------------------------------------------------------

U = "3f1a6c2e-0000-4000-8000-00000000000a"


@pytest.mark.parametrize("spelling", [U, U.upper(), "{" + U + "}", "urn:uuid:" + U, U.replace("-", "")])
def test_parse_uuid_gives_the_canonical_spelling(spelling: str) -> None:
    assert parse_uuid(spelling) == U


@pytest.mark.parametrize("bad", ["", "abc", U + "/x", U[:-1] + "g", "../" + U, None, 12, b"x" * 16])
def test_parse_uuid_refuses_non_uuids(bad: object) -> None:
    assert parse_uuid(bad) is None
    assert not is_canonical_uuid(bad)


def test_only_the_canonical_spelling_goes_into_a_path() -> None:
    assert is_canonical_uuid(U) and is_canonical_uuid(U.upper())
    for other in ("{" + U + "}", "urn:uuid:" + U, U.replace("-", ""), U[:9] + "_" + U[10:], " " + U):
        assert not is_canonical_uuid(other), other


# -- layering ------------------------------------------------------------------------------------------


def test_the_domain_imports_no_transport_and_no_engine() -> None:
    modules = [
        m.name for m in pkgutil.iter_modules(videogen_server.domain.__path__, "videogen_server.domain.")
    ]
    assert len(modules) >= 5
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(n for n in ('grpc', 'httpx', 'aiohttp', 'sqlite3') if n in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
