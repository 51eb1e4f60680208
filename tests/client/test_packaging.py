"""The client is its own distribution (`videogen-client`, clients/python): a team that only calls the service
installs grpcio, protobuf and grpcio-status, never the server's aiohttp, httpx, prometheus or OpenTelemetry.
rich (the CLI's display) is the `cli` extra, and the CLI says how to get it when it is missing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CLIENT = REPO / "clients" / "python"

# What a client team may be asked to install, and what must never come with it.
CLIENT_DEPENDENCIES = {"grpcio", "grpcio-status", "protobuf", "googleapis-common-protos"}
SERVER_ONLY = (
    "aiohttp",
    "httpx",
    "prometheus-client",
    "opentelemetry",  # -api, -sdk, -exporter-*
    "grpcio-health-checking",
    "grpcio-reflection",
)

# pip's words for "no network", or for an index that lacks a package the dev venv was installed with
# (same pins: `make install` would have failed first on a wrong one). The fresh-venv install then skips.
_OFFLINE = (
    "No matching distribution found",
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ProxyError",
)


def _project(path: Path) -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads(path.read_text())["project"]
    return project


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return match.group(0).lower().replace("_", "-")


def _pins(requirements: list[str]) -> dict[str, str]:
    return {_name(r): r[len(_name(r)) :].strip() for r in requirements}


def test_the_client_declares_only_grpc_and_protobuf() -> None:
    client = _project(CLIENT / "pyproject.toml")
    assert client["name"] == "videogen-client"
    assert {_name(r) for r in client["dependencies"]} == CLIENT_DEPENDENCIES
    assert {extra: [_name(r) for r in reqs] for extra, reqs in client["optional-dependencies"].items()} == {
        "cli": ["rich"]
    }
    assert client["scripts"] == {"videogen": "videogen_client._console:main"}


def test_the_server_takes_its_stubs_from_the_client_release() -> None:
    server, client = _project(REPO / "pyproject.toml"), _project(CLIENT / "pyproject.toml")
    assert server["version"] == client["version"]
    assert f"videogen-client=={client['version']}" in server["dependencies"]
    assert server["scripts"] == {"videogen-server": "videogen_server.main:main"}
    # One gRPC release for both: the stubs are generated for it and refuse an older runtime.
    server_pins, client_pins = _pins(server["dependencies"]), _pins(client["dependencies"])
    for name in CLIENT_DEPENDENCIES:
        assert client_pins[name] == server_pins[name], name
    # The stubs are generated into one place only: the client distribution.
    assert not (REPO / "gen").exists()
    assert (CLIENT / "gen" / "videogen" / "v1" / "video_service_pb2_grpc.py").is_file()


def test_without_rich_the_library_imports_and_the_cli_says_how_to_install_it() -> None:
    code = (
        "import sys; sys.modules['rich'] = None\n"  # as if rich were not installed
        "import videogen_client, videogen.v1.video_service_pb2_grpc\n"
        "from videogen_client import cli\n"
        "sys.exit(cli.main(['--help']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 4, out.stderr  # EXIT_LOCAL_ERROR
    assert "pip install 'videogen-client[cli]'" in out.stderr
    assert out.stdout == ""


def test_the_client_installs_alone_into_a_fresh_venv(tmp_path: Path) -> None:
    """`pip install ./clients/python` into an empty venv: the client and the stubs import, the server's
    dependencies are absent, and the server itself is not there (the wheel holds only the client)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    python = str(venv / "bin" / "python")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    env.pop("PYTHONPATH", None)
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--timeout", "15", str(CLIENT)],
        capture_output=True,
        text=True,
        timeout=100,
        env=env,
    )
    if install.returncode != 0 and any(word in install.stdout + install.stderr for word in _OFFLINE):
        pytest.skip(f"no package index reachable: {install.stderr.strip().splitlines()[-1:]}")
    assert install.returncode == 0, install.stderr

    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True, env=env
    )
    installed = {_name(line) for line in listed.stdout.splitlines() if line}
    assert "videogen-client" in installed
    assert not {n for n in installed if n.startswith(SERVER_ONLY)}, installed
    assert "videogen" not in installed and "rich" not in installed  # no server; no CLI extra asked for

    probe = (
        "import importlib.util, videogen_client, videogen.v1.video_pb2, videogen.v1.video_service_pb2_grpc\n"
        "assert importlib.util.find_spec('videogen_server') is None\n"
        "print(videogen_client.__version__)\n"
    )
    imported = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == _project(CLIENT / "pyproject.toml")["version"]

    cli = subprocess.run(
        [str(venv / "bin" / "videogen"), "--help"], capture_output=True, text=True, timeout=60, env=env
    )
    assert cli.returncode == 4 and "videogen-client[cli]" in cli.stderr
