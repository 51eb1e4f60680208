"""VIDEOGEN_RUNWAY_KEYS / VIDEOGEN_RUNWAY_KEYS_FILE (issue 12): named Runway keys, parsed by config.py, the
only env reader. Every error names the entry (position or name), never a secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from videogen_server.config import Config, ConfigError

A = "key_" + "a1" * 32
B = "key_" + "b2" * 32
C = "key_" + "c3" * 32


def test_inline_keys_in_order_and_no_simulator():
    config = Config.from_env({"VIDEOGEN_RUNWAY_KEYS": f"runway-key-1:{A}, runway-key-2:{B}"})
    assert list(config.runway_key_secrets.items()) == [("runway-key-1", A), ("runway-key-2", B)]
    assert not config.use_simulator
    assert A not in repr(config) and B not in repr(config)


def test_keys_file_skips_blank_lines_and_comments(tmp_path: Path):
    path = tmp_path / "keys"
    path.write_text(f"# mounted from a Secret\n\nteam_a:{A}\n   # another comment\nteam_b:{B}\n")
    config = Config.from_env({"VIDEOGEN_RUNWAY_KEYS_FILE": str(path)})
    assert dict(config.runway_keys) == {"team_a": A, "team_b": B}


def test_nothing_set_is_the_simulator():
    config = Config.from_env({})
    assert config.use_simulator and config.runway_key_secrets == {}


def test_runwayml_api_secret_alone_is_the_default_key():
    config = Config.from_env({"RUNWAYML_API_SECRET": A})
    assert config.runway_key_secrets == {"default": A}


def test_runwayml_api_secret_beside_the_list_is_the_default_key():
    config = Config.from_env({"RUNWAYML_API_SECRET": A, "VIDEOGEN_RUNWAY_KEYS": f"second:{B}"})
    assert list(config.runway_key_secrets.items()) == [("default", A), ("second", B)]


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"VIDEOGEN_RUNWAY_KEYS": f"a:{A}", "VIDEOGEN_RUNWAY_KEYS_FILE": "/x"}, ["not both"]),
        ({"VIDEOGEN_RUNWAY_KEYS": f"a:{A},{B}"}, ["entry 2", "name:secret"]),
        ({"VIDEOGEN_RUNWAY_KEYS": f"Team A:{A}"}, ["entry 1", "a-z"]),
        ({"VIDEOGEN_RUNWAY_KEYS": f"a:{A},a:{B}"}, ["'a'", "twice"]),
        ({"VIDEOGEN_RUNWAY_KEYS": f"a:{A},b:{A}"}, ["'a'", "'b'", "same secret"]),
        ({"VIDEOGEN_RUNWAY_KEYS": f"a:{A} {B}"}, ["entry 1", "whitespace"]),
        (
            {"RUNWAYML_API_SECRET": C, "VIDEOGEN_RUNWAY_KEYS": f"default:{A}"},
            ["RUNWAYML_API_SECRET", "default"],
        ),
        ({"RUNWAYML_API_SECRET": A, "VIDEOGEN_RUNWAY_KEYS": f"b:{A}"}, ["'default'", "'b'", "same secret"]),
    ],
)
def test_bad_configurations_are_one_line_naming_the_entry_never_the_secret(env, words):
    with pytest.raises(ConfigError) as info:
        Config.from_env(env)
    message = str(info.value)
    for word in words:
        assert word in message
    for secret in (A, B, C):
        assert secret not in message
    assert "\n" not in message


def test_a_bad_line_of_the_file_is_named_by_its_number(tmp_path: Path):
    path = tmp_path / "keys"
    path.write_text(f"# header\nteam_a:{A}\n{B}\n")
    with pytest.raises(ConfigError) as info:
        Config.from_env({"VIDEOGEN_RUNWAY_KEYS_FILE": str(path)})
    assert "line 3" in str(info.value) and B not in str(info.value)


def test_an_unreadable_file_is_one_line(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        Config.from_env({"VIDEOGEN_RUNWAY_KEYS_FILE": str(tmp_path / "missing")})
    assert "VIDEOGEN_RUNWAY_KEYS_FILE" in str(info.value) and "cannot read" in str(info.value)


def test_keys_given_in_code_are_checked_too():
    with pytest.raises(ConfigError):
        Config(runway_keys={"Bad Name": A})
