"""Mutual TLS: the client certificate's fingerprint names the tenant."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
from jubao.errors import Reason
from jubao.meta.v1 import meta_pb2

from tests.platform.errors import expect_error
from tests.platform.harness import CATALOGUE, settings_for, start
from tests.platform.pki import fingerprint, make_pki, needs_openssl

pytestmark = needs_openssl


async def test_client_certificate_authenticates_its_tenant(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki)
    catalogue = tmp_path / "tenants"
    catalogue.mkdir()
    for path in CATALOGUE.glob("*.toml"):
        shutil.copy(path, catalogue)
    with (catalogue / "demo-bank.toml").open("a") as file:
        file.write(f'\n[[client_certificates]]\nsha256 = "{fingerprint(pki / "client.crt")}"\n')
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
    make_pki(pki)
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
