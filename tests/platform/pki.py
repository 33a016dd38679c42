"""Test certificates made with openssl: a CA, a server certificate for 127.0.0.1 and client certificates
the CA signed (mutual TLS)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="openssl is needed to make test certificates"
)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(folder: Path, clients: Mapping[str, str] | None = None) -> None:
    """`ca.crt`, `server.crt` (for localhost and 127.0.0.1) and, for each client name, `<name>.crt` with
    CN=<name> and the given X.509 extension line (none when empty; default: one client, `client`), each
    with its `.key`."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=jubao-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        cwd=folder,
    )
    certificates = {"server": "subjectAltName=DNS:localhost,IP:127.0.0.1", **(clients or {"client": ""})}
    for name, extension in certificates.items():
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=folder,
        )
        ext_args = ["-extfile", "ext.cnf"] if extension else []
        (folder / "ext.cnf").write_text(extension + "\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            f"{name}.crt",
            *ext_args,
            cwd=folder,
        )


def fingerprint(certificate: Path) -> str:
    """The SHA-256 fingerprint as `openssl x509 -fingerprint -sha256` prints it (upper-case, colons)."""
    out = subprocess.run(
        ["openssl", "x509", "-in", str(certificate), "-noout", "-fingerprint", "-sha256"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.strip().split("=", 1)[1]
