"""Mutual TLS: the client certificate's fingerprint names the tenant."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from jubao.errors import Reason
from jubao.meta.v1 import meta_pb2

from tests.platform.errors import expect_error
from tests.platform.harness import CATALOGUE, settings_for, start

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="openssl is needed to make test certificates"
)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_pki(folder: Path) -> None:
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
    for name, extension in (("server", "subjectAltName=DNS:localhost,IP:127.0.0.1"), ("client", "")):
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


def _fingerprint(certificate: Path) -> str:
    out = subprocess.run(
        ["openssl", "x509", "-in", str(certificate), "-noout", "-fingerprint", "-sha256"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.strip().split("=", 1)[1]


async def test_client_certificate_authenticates_its_tenant(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    _make_pki(pki)
    catalogue = tmp_path / "tenants"
    catalogue.mkdir()
    for path in CATALOGUE.glob("*.toml"):
        shutil.copy(path, catalogue)
    with (catalogue / "demo-bank.toml").open("a") as file:
        file.write(f'\n[[client_certificates]]\nsha256 = "{_fingerprint(pki / "client.crt")}"\n')
    tls = {
        "enabled": True,
        "cert_path": str(pki / "server.crt"),
        "key_path": str(pki / "server.key"),
        "client_ca_path": str(pki / "ca.crt"),
    }
    settings = settings_for(
        tmp_path / "jubao.db", server={"tls": tls}, tenancy={"catalogue_dir": str(catalogue)}
    )
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.crt").read_bytes(),
        private_key=(pki / "client.key").read_bytes(),
        certificate_chain=(pki / "client.crt").read_bytes(),
    )
    running = await start(settings, credentials)
    try:
        caller = await running.meta.GetCaller(meta_pb2.GetCallerRequest())
        assert (caller.tenant_id, caller.auth_method) == ("demo-bank", "mtls")
    finally:
        await running.close()


async def test_unbound_client_certificate_is_unauthenticated(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    _make_pki(pki)
    tls = {
        "enabled": True,
        "cert_path": str(pki / "server.crt"),
        "key_path": str(pki / "server.key"),
        "client_ca_path": str(pki / "ca.crt"),
    }
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.crt").read_bytes(),
        private_key=(pki / "client.key").read_bytes(),
        certificate_chain=(pki / "client.crt").read_bytes(),
    )
    running = await start(settings_for(tmp_path / "jubao.db", server={"tls": tls}), credentials)
    try:
        await expect_error(
            running.meta.Ping(meta_pb2.PingRequest()),
            grpc.StatusCode.UNAUTHENTICATED,
            Reason.CLIENT_CERTIFICATE_UNKNOWN,
        )
    finally:
        await running.close()
