"""The Flight process resolves tenants like gRPC, answers with the same reasons, and never loads grpcio."""

from __future__ import annotations

import pytest
from jubao.errors import PermissionDenied, Reason, Unauthenticated

from tests.bulk.support import FlightProcess, batch_id, transfers

BAD_KEY = "jbk.demo-bank.0000000000b1.not-the-secret"


@pytest.mark.parametrize(
    ("key", "reason"), [(None, Reason.API_KEY_MISSING), (BAD_KEY, Reason.API_KEY_INVALID)]
)
def test_a_call_without_a_valid_key_is_unauthenticated(
    flight_process: FlightProcess, key: str | None, reason: Reason
) -> None:
    with flight_process.client(key) as client:
        with pytest.raises(Unauthenticated) as refused:
            client.get_upload(batch_id())
        assert refused.value.reason == reason
        with pytest.raises(Unauthenticated):
            client.upload_transfers(batch_id(), transfers(3))
        with pytest.raises(Unauthenticated):
            client.export_entries(["alice"]).read_all()


def test_a_dataset_of_a_product_not_enabled_is_refused(
    flight_process: FlightProcess, keys: dict[str, str]
) -> None:
    with flight_process.client(keys["demo-insurer"]) as client:
        with pytest.raises(PermissionDenied) as refused:
            client.upload_transfers(batch_id(), transfers(3))
        assert (refused.value.reason, refused.value.metadata) == (
            Reason.PRODUCT_NOT_ENABLED,
            {"product": "payments"},
        )
        with pytest.raises(PermissionDenied):
            client.export_entries(["alice"]).read_all()


def test_flight_calls_are_counted_with_their_code(
    flight_process: FlightProcess, keys: dict[str, str]
) -> None:
    with flight_process.client(None) as anonymous, pytest.raises(Unauthenticated):
        anonymous.get_upload(batch_id())
    with flight_process.client(keys["demo-bank"]) as client:
        client.upload_transfers(batch_id(), transfers(3))
    metrics = flight_process.metrics()
    calls = [line for line in metrics.splitlines() if line.startswith("rpc_server_calls_total{")]
    assert any('rpc_method="DoAction"' in c and 'status_code="UNAUTHENTICATED"' in c for c in calls), calls
    assert any(
        'rpc_method="DoPut"' in c and 'jubao_tenant_id="demo-bank"' in c and '"OK"' in c for c in calls
    )
    assert any(line.startswith("bulk_bytes_total{") for line in metrics.splitlines())


def test_the_flight_process_never_loads_grpcio(flight_process: FlightProcess, keys: dict[str, str]) -> None:
    with flight_process.client(keys["demo-bank"]) as client:
        client.upload_transfers(batch_id(), transfers(3))
    libraries = flight_process.loaded_libraries()
    assert "libarrow_flight" in libraries, "the check sees the libraries the process loaded"
    assert "cygrpc" not in libraries
