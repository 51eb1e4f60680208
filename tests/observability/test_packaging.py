"""What `make install` gives (the server `videogen` and the client `videogen-client`, both from the checkout):
a version, both console scripts, py.typed, gRPC packages of one release. The client distribution on its
own: tests/client/test_packaging.py."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import re
import subprocess
import sys

import videogen_client
import videogen_server


def test_the_distribution_has_a_version_both_packages_report():
    version = importlib.metadata.version("videogen")
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", version)
    assert videogen_server.__version__ == version == videogen_client.__version__


def test_console_scripts_and_typing_markers():
    scripts = {
        ep.name: ep.value
        for dist in ("videogen", "videogen-client")
        for ep in importlib.metadata.distribution(dist).entry_points
        if ep.group == "console_scripts"
    }
    assert scripts == {
        "videogen-server": "videogen_server.main:main",
        "videogen": "videogen_client._console:main",
    }
    for package in ("videogen_server", "videogen_client"):
        assert importlib.resources.files(package).joinpath("py.typed").is_file(), package


def test_grpc_packages_are_pinned_to_one_release():
    requirements = [r for r in importlib.metadata.requires("videogen") or [] if "extra ==" not in r]
    grpc = {m.group(1): m.group(2) for r in requirements if (m := re.fullmatch(r"(grpcio[\w-]*)==(\S+)", r))}
    assert set(grpc) == {"grpcio", "grpcio-status", "grpcio-health-checking", "grpcio-reflection"}
    assert len(set(grpc.values())) == 1, grpc
    assert {importlib.metadata.version(name) for name in grpc} == set(grpc.values())


def test_server_command_answers_version_and_help_without_starting():
    out = subprocess.run(
        [sys.executable, "-m", "videogen_server", "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.strip() == f"videogen-server {videogen_server.__version__}"
    helped = subprocess.run(
        [sys.executable, "-m", "videogen_server", "--help"], capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0 and "VIDEOGEN_METRICS_LISTEN" in helped.stdout
