"""VIDEOGEN_API_KEYS refuses keys that cannot identify a caller safely (issue 8, item 9b).

Two callers sharing a key made the second one act as the first (the first match wins); a key shorter than
16 characters is guessable and too short to be scrubbed from the logs. Both are refused at start-up with one
line that never prints a key.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from videogen_server.config import Config, ConfigError

GOOD_A = "alice-key-0123456789"
GOOD_B = "bob-key-9876543210ab"
SHORT = "short-key-1234"  # 14 characters


def test_distinct_long_keys_are_accepted():
    config = Config.from_env({"VIDEOGEN_API_KEYS": f"alice:{GOOD_A},bob:{GOOD_B}"})
    assert dict(config.api_keys) == {"alice": GOOD_A, "bob": GOOD_B}


def test_two_callers_sharing_a_key_are_refused_without_printing_it():
    with pytest.raises(ConfigError) as info:
        Config.from_env({"VIDEOGEN_API_KEYS": f"alice:{GOOD_A},bob:{GOOD_A}"})
    message = str(info.value)
    assert "VIDEOGEN_API_KEYS" in message and "alice" in message and "bob" in message
    assert GOOD_A not in message


def test_a_short_key_is_refused_without_printing_it():
    with pytest.raises(ConfigError) as info:
        Config.from_env({"VIDEOGEN_API_KEYS": f"alice:{GOOD_A},bob:{SHORT}"})
    message = str(info.value)
    assert "VIDEOGEN_API_KEYS" in message and "bob" in message and "16" in message
    assert SHORT not in message


def test_keys_given_in_code_follow_the_same_rules():
    """App tests and embedders build Config directly: the same checks apply."""
    with pytest.raises(ConfigError):
        Config(api_keys={"alice": GOOD_A, "bob": GOOD_A})
    with pytest.raises(ConfigError):
        Config(api_keys={"alice": SHORT})


@pytest.mark.parametrize(
    ("keys", "secret"),
    [(f"alice:{GOOD_A},bob:{GOOD_A}", GOOD_A), (f"alice:{SHORT}", SHORT)],
    ids=["shared", "short"],
)
async def test_the_server_process_refuses_to_start_with_one_line(tmp_path, keys, secret):
    env = {
        **os.environ,
        "VIDEOGEN_API_KEYS": keys,
        "VIDEOGEN_LISTEN": "127.0.0.1:0",
        "VIDEOGEN_METRICS_LISTEN": "off",
        "VIDEOGEN_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("RUNWAYML_API_SECRET", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "videogen_server", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("the server started with unsafe caller keys") from None
    text = (out + err).decode()
    assert proc.returncode == 2, text
    lines = text.splitlines()
    assert len(lines) == 1 and "configuration error: VIDEOGEN_API_KEYS" in lines[0], lines
    assert secret not in text
