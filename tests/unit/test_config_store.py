"""VIDEOGEN_STORE (issue 10): which store the service opens, and a bad value refused at start-up in one line
that never shows a password."""

from __future__ import annotations

from pathlib import Path

import pytest
from faults.server_process import run_to_exit
from videogen_server.config import Config, ConfigError
from videogen_server.store import SqliteVideoStore, open_store
from videogen_server.store.redis import RedisVideoStore

SECRET = "hunter2-not-for-logs"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("", "sqlite data/videogen.sqlite3"),
        ("sqlite", "sqlite data/videogen.sqlite3"),
        ("sqlite:///var/lib/videogen/jobs.db", "sqlite /var/lib/videogen/jobs.db"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://redis.internal", "redis://redis.internal"),
        (f"redis://videogen:{SECRET}@redis.internal:6380/2", "redis://redis.internal:6380/2"),
        (f"rediss://:{SECRET}@redis.internal:6380/0", "rediss://redis.internal:6380/0"),
        # redis-py takes a password from the query too; one right after the host is still a query.
        (f"redis://redis.internal:6380?password={SECRET}", "redis://redis.internal:6380"),
        (f"redis://redis.internal#{SECRET}", "redis://redis.internal"),
    ],
)
def test_good_values(value: str, shown: str) -> None:
    config = Config.from_env({"VIDEOGEN_STORE": value, "VIDEOGEN_DATA_DIR": "data"})
    assert config.store_description == shown
    assert SECRET not in repr(config)


@pytest.mark.parametrize(
    "value",
    [
        "postgres://u:" + SECRET + "@db:5432/x",
        "mysql",
        "redis://:" + SECRET + "@:6379/0",  # no host
        "redis://:" + SECRET + "@host:notaport/0",
        "redis://:" + SECRET + "@host:6379/zero",
        "sqlite://relative.db",
        "sqlite:///",
        "sqlite:relative.db",
        "u:" + SECRET + "@host:6379",
    ],
)
def test_bad_values_fail_without_the_password(value: str) -> None:
    with pytest.raises(ConfigError, match="VIDEOGEN_STORE") as info:
        Config.from_env({"VIDEOGEN_STORE": value})
    assert SECRET not in str(info.value)


def test_open_store_picks_the_engine(tmp_path: Path) -> None:
    assert isinstance(open_store(tmp_path / "d"), SqliteVideoStore)
    own = open_store(tmp_path / "d", f"sqlite://{tmp_path}/elsewhere/jobs.db")
    assert isinstance(own, SqliteVideoStore) and own.path == f"{tmp_path}/elsewhere/jobs.db"
    shared = open_store(tmp_path / "d", "redis://127.0.0.1:6379/0")
    assert isinstance(shared, RedisVideoStore) and shared.description == "redis://127.0.0.1:6379/0"


async def test_a_bad_store_stops_start_up_in_one_line(tmp_path: Path) -> None:
    code, output = await run_to_exit(
        {
            "VIDEOGEN_STORE": f"redis://admin:{SECRET}@host:port/0",
            "VIDEOGEN_LISTEN": "127.0.0.1:0",
            "VIDEOGEN_METRICS_LISTEN": "off",
            "VIDEOGEN_DATA_DIR": str(tmp_path / "data"),
        }
    )
    lines = output.splitlines()
    assert code == 2, output
    assert len(lines) == 1 and "configuration error: VIDEOGEN_STORE" in lines[0], lines
    assert SECRET not in output


def test_max_active_per_caller_is_off_by_default_and_a_positive_integer() -> None:
    assert Config.from_env({}).max_active_per_caller is None
    assert Config.from_env({"VIDEOGEN_MAX_ACTIVE_PER_CALLER": "3"}).max_active_per_caller == 3
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(ConfigError, match="VIDEOGEN_MAX_ACTIVE_PER_CALLER"):
            Config.from_env({"VIDEOGEN_MAX_ACTIVE_PER_CALLER": bad})
    with pytest.raises(ConfigError, match="VIDEOGEN_MAX_ACTIVE_PER_CALLER"):
        Config(max_active_per_caller=0)


async def test_a_bad_max_active_per_caller_stops_start_up_in_one_line(tmp_path: Path) -> None:
    code, output = await run_to_exit(
        {
            "VIDEOGEN_MAX_ACTIVE_PER_CALLER": "lots",
            "VIDEOGEN_LISTEN": "127.0.0.1:0",
            "VIDEOGEN_METRICS_LISTEN": "off",
            "VIDEOGEN_DATA_DIR": str(tmp_path / "data"),
        }
    )
    lines = output.splitlines()
    assert code == 2, output
    assert len(lines) == 1 and "configuration error: VIDEOGEN_MAX_ACTIVE_PER_CALLER" in lines[0], lines
