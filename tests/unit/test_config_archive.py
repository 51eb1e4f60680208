"""VIDEOGEN_ARCHIVE and VIDEOGEN_ARCHIVE_RETENTION (issue 11): where outputs are archived and for how long;
a bad value stops start-up in one line (exit 2) that never shows a credential."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from faults.server_process import run_to_exit
from videogen_server.config import DEFAULT_ARCHIVE_RETENTION, Config, ConfigError

SECRET = "hunter2-not-for-logs"


def test_the_default_archive_is_a_directory_under_the_data_dir(tmp_path: Path) -> None:
    config = Config.from_env({"VIDEOGEN_DATA_DIR": str(tmp_path / "data")})
    assert config.archive == ""
    assert config.archive_url == f"file://{tmp_path}/data/archive"
    assert config.archive_retention == DEFAULT_ARCHIVE_RETENTION == 30 * 86400
    # A relative data dir resolves against the working directory, as the store's does.
    relative = Config.from_env({"VIDEOGEN_DATA_DIR": "rel"})
    assert relative.archive_url == "file://" + os.path.join(os.getcwd(), "rel", "archive")
    assert Config().archive_url == "file://" + os.path.join(os.getcwd(), ".videogen", "archive")


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("off", None),
        ("OFF", None),
        ("file:///var/lib/videogen/archive", "file:///var/lib/videogen/archive"),
        ("file:///mnt/shared/archive/", "file:///mnt/shared/archive"),
        ("s3://videos", "s3://videos"),
        ("s3://my-bucket.example/videogen/outputs", "s3://my-bucket.example/videogen/outputs"),
        ("  s3://videos/x/  ", "s3://videos/x"),
    ],
)
def test_good_archive_values(value: str, url: str | None) -> None:
    assert Config.from_env({"VIDEOGEN_ARCHIVE": value}).archive_url == url


@pytest.mark.parametrize(
    "value",
    [
        "archive/",  # relative
        "/var/archive",  # a path, not a URL
        "file://relative/dir",
        "file:///",
        "file:///a/../b",
        "s3://",
        "s3://ab",  # too short for a bucket
        "s3://Videos/x",  # upper case
        "s3://bucket_name/x",
        "s3://bucket:9000/x",  # an endpoint goes in AWS_ENDPOINT_URL
        f"s3://AKIA:{SECRET}@bucket/x",
        f"https://user:{SECRET}@s3.example.com/bucket",
        "s3://bucket/a//b",
        "s3://bucket/x?versionId=1",
        "gs://bucket",
        "none",
    ],
)
def test_bad_archive_values_fail_in_one_line_without_secrets(value: str) -> None:
    with pytest.raises(ConfigError, match="VIDEOGEN_ARCHIVE") as info:
        Config.from_env({"VIDEOGEN_ARCHIVE": value})
    assert "\n" not in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30d", 30 * 86400.0),
        ("12h", 12 * 3600.0),
        ("90m", 5400.0),
        ("3600s", 3600.0),
        ("1.5h", 5400.0),
        ("5s", 5.0),
        (" 7D ", 7 * 86400.0),
        ("forever", None),
        ("Forever", None),
    ],
)
def test_retention_values(value: str, seconds: float | None) -> None:
    assert Config.from_env({"VIDEOGEN_ARCHIVE_RETENTION": value}).archive_retention == seconds


@pytest.mark.parametrize("value", ["30", "0d", "-1d", "30 days", "d", "1w", "never", "1e3s", "0.0s"])
def test_bad_retention_values(value: str) -> None:
    with pytest.raises(ConfigError, match="VIDEOGEN_ARCHIVE_RETENTION") as info:
        Config.from_env({"VIDEOGEN_ARCHIVE_RETENTION": value})
    assert "\n" not in str(info.value)


def test_a_retention_set_in_code_must_be_positive() -> None:
    assert Config(archive_retention=None).archive_retention is None
    with pytest.raises(ConfigError, match="VIDEOGEN_ARCHIVE_RETENTION"):
        Config(archive_retention=0)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("VIDEOGEN_ARCHIVE", f"s3://AKIA:{SECRET}@bucket/x"), ("VIDEOGEN_ARCHIVE_RETENTION", "a month")],
)
async def test_a_bad_archive_setting_stops_start_up_in_one_line(
    tmp_path: Path, variable: str, value: str
) -> None:
    code, output = await run_to_exit(
        {
            variable: value,
            "VIDEOGEN_LISTEN": "127.0.0.1:0",
            "VIDEOGEN_METRICS_LISTEN": "off",
            "VIDEOGEN_DATA_DIR": str(tmp_path / "data"),
        }
    )
    lines = output.splitlines()
    assert code == 2, output
    assert len(lines) == 1 and f"configuration error: {variable}" in lines[0], lines
    assert SECRET not in output
