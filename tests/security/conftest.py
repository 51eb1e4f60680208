"""Fixtures for the security tests: a throwaway PKI generated at runtime with the `openssl` CLI.

`cryptography` is not a dependency of this project, and openssl is on every machine that runs `make test`
(Debian's base image has it); the certificates live only in pytest's temporary directory.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Pki:
    ca_cert: Path  # the CA that signed the server and the good client certificate
    server_cert: Path  # for "localhost" and 127.0.0.1
    server_key: Path
    client_cert: Path  # signed by the CA
    client_key: Path
    rogue_cert: Path  # a client certificate from a different, untrusted CA
    rogue_key: Path

    @staticmethod
    def read(path: Path) -> bytes:
        return path.read_bytes()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    key, cert = d / f"{name}.key", d / f"{name}.pem"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
        "-keyout", str(key), "-out", str(cert),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip
    return cert, key


def _leaf(d: Path, name: str, ca: tuple[Path, Path], ext: str) -> tuple[Path, Path]:
    key, csr, cert, extfile = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem", d / f"{name}.ext"
    extfile.write_text(ext)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", str(key),
             "-out", str(csr), cwd=d)  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
        "-days", "2", "-out", str(cert), "-extfile", str(extfile),
        cwd=d,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.fail("the TLS tests need the openssl command-line tool")
    d = tmp_path_factory.mktemp("pki")
    ca = _ca(d, "test-ca")
    rogue_ca = _ca(d, "rogue-ca")
    server = _leaf(
        d, "server", ca, "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    client = _leaf(d, "client", ca, "extendedKeyUsage=clientAuth\n")
    rogue = _leaf(d, "rogue", rogue_ca, "extendedKeyUsage=clientAuth\n")
    return Pki(ca[0], server[0], server[1], client[0], client[1], rogue[0], rogue[1])
