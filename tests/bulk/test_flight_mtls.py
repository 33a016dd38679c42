"""Mutual TLS on the Flight server: the client certificate names the tenant as on gRPC (its fingerprint),
a certificate only ever speaks for the TLS session it came with, and a call without one never starts."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from jubao.bulk.client import CERTIFICATE_HEADER, GET_UPLOAD, BulkClient, error_from_flight
from jubao.bulk.v1 import bulk_pb2
from jubao.cli.main import app
from jubao.errors import NotFound, Reason, Unauthenticated, Unavailable
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.storage.contract import StorageBackend
from jubao_server.tenancy.store import TenantStore
from pyarrow import flight
from typer.testing import CliRunner

from tests.bulk.support import FlightProcess, batch_id, transfers
from tests.platform.pki import fingerprint, make_pki, needs_openssl

pytestmark = needs_openssl

# Bank A's certificate names it by its common name; platform B's by a subject alternative name (the TLS
# peer identity is then that name, not the common name).
CLIENTS = {"bank-a": "", "platform-b": "subjectAltName=URI:spiffe://jubao.test/platform-b", "stranger": ""}
BOUND = {"bank-a": "demo-bank", "platform-b": "demo-platform"}


@pytest.fixture
async def mtls_flight(
    store: tuple[StorageBackend, dict[str, str]], tmp_path: Path
) -> AsyncIterator[tuple[FlightProcess, Path]]:
    """The Flight process under mutual TLS (client certificates of the test CA), with bank-a's and
    platform-b's certificates bound to their tenants; `stranger` is the CA's but bound to none."""
    backend, env = store
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki, CLIENTS)
    tenants = TenantStore(backend, SYSTEM_CLOCK)
    for name, tenant_id in BOUND.items():
        await tenants.bind_certificate(fingerprint(pki / f"{name}.crt").replace(":", "").lower(), tenant_id)
    tls = {
        "JUBAO_SERVER__TLS__ENABLED": "true",
        "JUBAO_SERVER__TLS__CERT_PATH": str(pki / "server.crt"),
        "JUBAO_SERVER__TLS__KEY_PATH": str(pki / "server.key"),
        "JUBAO_SERVER__TLS__CLIENT_CA_PATH": str(pki / "ca.crt"),
    }
    process = FlightProcess.start(env | tls, tmp_path / "flight.log", scheme="grpc+tls")
    try:
        yield process, pki
    finally:
        process.kill()


def _client(process: FlightProcess, pki: Path, name: str | None, api_key: str | None = None) -> BulkClient:
    certificate = {} if name is None else _identity(pki, name)
    return BulkClient(
        process.location, api_key, tls_root_certs=(pki / "ca.crt").read_bytes(), timeout_s=30, **certificate
    )


def _identity(pki: Path, name: str) -> dict[str, bytes]:
    return {
        "cert_chain": (pki / f"{name}.crt").read_bytes(),
        "private_key": (pki / f"{name}.key").read_bytes(),
    }


def test_the_client_certificate_names_the_tenant(
    mtls_flight: tuple[FlightProcess, Path], keys: dict[str, str]
) -> None:
    process, pki = mtls_flight
    batch = batch_id()
    with _client(process, pki, "bank-a") as bank:
        receipt = bank.upload_transfers(batch, transfers(3))
        assert receipt.rows_received == 3
        assert bank.get_upload(batch).rows_received == 3
    with _client(process, pki, "platform-b") as platform:
        with pytest.raises(NotFound) as refused:
            platform.get_upload(batch)
        assert refused.value.reason == Reason.UPLOAD_NOT_FOUND
        assert all(batch.encode() not in info.descriptor.command for info in platform.list_results())
    with _client(process, pki, "platform-b", keys["demo-bank"]) as keyed:
        assert keyed.get_upload(batch).rows_received == 3, "an API key names its tenant under mTLS too"
    tls = [
        "--tls-ca",
        str(pki / "ca.crt"),
        "--tls-cert",
        str(pki / "bank-a.crt"),
        "--tls-key",
        str(pki / "bank-a.key"),
    ]
    options = ["--bulk-endpoint", f"127.0.0.1:{process.port}", *tls, "--json"]
    shown = CliRunner().invoke(app, [*options, "bulk", "status", batch], env={"JUBAO_API_KEY": None})
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["batchId"] == batch


def test_a_certificate_speaks_only_for_its_own_tls_session(mtls_flight: tuple[FlightProcess, Path]) -> None:
    """Bank A's TLS session presenting platform B's certificate (public, unlike its key) is refused: the
    presented certificate must be the session's."""
    process, pki = mtls_flight
    forged = base64.b64encode(ssl.PEM_cert_to_DER_cert((pki / "platform-b.crt").read_text()))
    client = flight.FlightClient(
        process.location, tls_root_certs=(pki / "ca.crt").read_bytes(), **_identity(pki, "bank-a")
    )
    options = flight.FlightCallOptions(headers=[(CERTIFICATE_HEADER.encode(), forged)], timeout=30)
    body = bulk_pb2.GetUploadRequest(batch_id=batch_id()).SerializeToString()
    with pytest.raises(flight.FlightError) as refused:
        list(client.do_action(flight.Action(GET_UPLOAD, body), options))
    client.close()
    error = error_from_flight(refused.value)
    assert isinstance(error, Unauthenticated)
    assert error.reason == Reason.CLIENT_CERTIFICATE_UNKNOWN


def test_an_unbound_certificate_is_unauthenticated_as_on_grpc(
    mtls_flight: tuple[FlightProcess, Path],
) -> None:
    process, pki = mtls_flight
    with _client(process, pki, "stranger") as stranger:
        with pytest.raises(Unauthenticated) as refused:
            stranger.get_upload(batch_id())
        assert refused.value.reason == Reason.CLIENT_CERTIFICATE_UNKNOWN
        with pytest.raises(Unauthenticated):
            stranger.export_entries(["alice"]).read_all()


def test_without_a_certificate_the_handshake_fails_as_on_grpc(
    mtls_flight: tuple[FlightProcess, Path], keys: dict[str, str]
) -> None:
    """Both servers require a client certificate under mutual TLS: the TLS handshake fails before any
    call, so there is no ErrorInfo to give, only UNAVAILABLE, even with an API key."""
    process, pki = mtls_flight
    with _client(process, pki, None, keys["demo-bank"]) as anonymous, pytest.raises(Unavailable):
        anonymous.get_upload(batch_id())
