"""Every RPC of every jubao service, called from outside as an auditor would: raw gRPC (no SDK), requests
built by Hypothesis from the method's descriptor with random and adversarial values, and bodies that are
not protobuf at all. Whatever comes in, the answer is never INTERNAL or UNKNOWN, every error carries a
`google.rpc.Status` with an ErrorInfo of the jubao.cloud domain, and its metadata fits in 8 KiB.

The methods are those of the services the server runs behind its pipeline (`POLICIES`), so a new
service is probed without a change here; a reflection check makes sure no jubao service escapes.
Failures print the falsifying example and how to reproduce it (`JUBAO_FUZZ_SEED`, and Hypothesis's
`@reproduce_failure` blob).
"""

from __future__ import annotations

import dataclasses
import os
import random
import uuid
from collections.abc import Iterator
from typing import Final

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from google.rpc import error_details_pb2, status_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from jubao.admin.v1 import tenant_admin_pb2 as admin_pb
from jubao.admin.v1 import tenant_admin_pb2_grpc as admin_grpc
from jubao.errors import ERROR_DOMAIN
from jubao.payments.v1 import payments_pb2 as pb
from jubao.payments.v1 import payments_pb2_grpc as pb_grpc
from jubao_server.app.grpc_server import POLICIES

from loadtest.server_process import ServerProcess
from tests.payments.support import escrow_request, hold_request, leg
from tests.platform.adversarial import Known, Requests
from tests.platform.harness import bearer, demo_keys

# gRPC's default limit on the metadata a client accepts (soft; the hard limit is 16 KiB).
METADATA_MAX_BYTES: Final = 8 * 1024
# Examples per method in `make test`; set JUBAO_FUZZ_EXAMPLES for a longer hunt.
EXAMPLES_PER_METHOD: Final = int(os.environ.get("JUBAO_FUZZ_EXAMPLES") or 40)
CALL_TIMEOUT_S: Final = 10.0
# A valid WatchEvents waits for events: the probe reads what comes in this time, then cancels.
STREAM_WAIT_S: Final = 0.3
SEED: Final = int(os.environ.get("JUBAO_FUZZ_SEED") or random.randrange(2**32))
METHODS: Final = [
    method for name in POLICIES for method in descriptor_pool.Default().FindServiceByName(name).methods
]
ACCOUNTS: Final = ("settlement", "alice", "bob", "shop", "escrow", "fees")


@dataclasses.dataclass
class Probe:
    """A real server process on SQLite and a raw channel to it."""

    channel: grpc.Channel
    # Role ("tenant" with payments, "operator") -> API key.
    keys: dict[str, str]
    known: Known

    def callers(self, method: MethodDescriptor) -> list[str]:
        policy = POLICIES[method.containing_service.full_name]
        if policy.operator_only:
            return [self.keys["operator"]]
        if policy.product is not None:
            return [self.keys["tenant"]]
        return list(self.keys.values())

    def call(self, method: MethodDescriptor, key: str, body: bytes) -> grpc.RpcError | None:
        path = f"/{method.containing_service.full_name}/{method.name}"
        metadata = bearer(key)
        try:
            if method.server_streaming:
                stream: grpc.UnaryStreamMultiCallable[bytes, bytes] = self.channel.unary_stream(path)
                responses = stream(body, metadata=metadata, timeout=STREAM_WAIT_S)
                for _ in responses:
                    break
                responses.cancel()
            else:
                unary: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(path)
                unary(body, metadata=metadata, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            return error
        return None


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    folder = tmp_path_factory.mktemp("adversarial")
    env = {"JUBAO_STORAGE__SQLITE__PATH": str(folder / "jubao.db"), "JUBAO_TELEMETRY__LOG_LEVEL": "warning"}
    server = ServerProcess.start(env, folder / "server.log")
    channel = grpc.insecure_channel(server.address)
    try:
        yield _set_up(channel)
        errors = [line for line in server.log_text().splitlines() if '"level": "error"' in line]
        assert not errors, f"the server logged errors: {errors[:3]}"
    finally:
        channel.close()
        server.kill()


def _set_up(channel: grpc.Channel) -> Probe:
    """An operator and a tenant with payments of their own, without a practical quota; funded accounts,
    a hold and an escrow; and a third tenant that the probe of TenantAdmin may change at will. Their
    names are the known strings the requests are drawn from."""
    admin = admin_grpc.TenantAdminStub(channel)
    demo_operator = bearer(demo_keys()["demo-operator"])
    suffix = uuid.uuid4().hex[:8]
    keys = {}
    for role, kind in (
        ("operator", admin_pb.TENANT_KIND_OPERATOR),
        ("tenant", admin_pb.TENANT_KIND_BANK),
        ("victim", admin_pb.TENANT_KIND_BANK),
    ):
        tenant = admin_pb.Tenant(
            tenant_id=f"fuzz-{role}-{suffix}",
            display_name=f"Fuzz {role}",
            kind=kind,
            products=[admin_pb.PRODUCT_PAYMENTS],
            quota=admin_pb.Quota(requests_per_s=100_000, burst_requests=100_000, concurrent_calls_max=10_000),
        )
        admin.CreateTenant(admin_pb.CreateTenantRequest(tenant=tenant), metadata=demo_operator)
        issued = admin.IssueApiKey(
            admin_pb.IssueApiKeyRequest(tenant_id=tenant.tenant_id), metadata=demo_operator
        )
        keys[role] = (tenant.tenant_id, issued.api_key.key_id, issued.secret)
    payments = pb_grpc.PaymentServiceStub(channel)
    bank = bearer(keys["tenant"][2])
    for account_id in ACCOUNTS:
        account_kind = {"settlement": pb.ACCOUNT_KIND_SETTLEMENT, "escrow": pb.ACCOUNT_KIND_ESCROW}.get(
            account_id, pb.ACCOUNT_KIND_CUSTOMER
        )
        policy = pb.AccountPolicy(allow_negative=account_id == "settlement")
        account = pb.Account(account_id=account_id, currency_code="CNY", kind=account_kind, policy=policy)
        payments.OpenAccount(pb.OpenAccountRequest(account=account), metadata=bank)
    funding = pb.CreateTransferRequest(
        request_id="fund", currency_code="CNY", legs=[leg("settlement", "alice", 10**9)]
    )
    transfer = payments.CreateTransfer(funding, metadata=bank).transfer
    hold = hold_request(100, request_id="hold")
    escrow = escrow_request(100, request_id="escrow")
    entries = payments.ListEntries(pb.ListEntriesRequest(account_id="alice", page_size=1), metadata=bank)
    accounts = payments.ListAccounts(pb.ListAccountsRequest(page_size=1), metadata=bank)
    known: Known = {
        "": [*ACCOUNTS, "CNY", "fund", "policy"],
        "account_id": ACCOUNTS,
        "currency_code": ["CNY", "USD", "JPY"],
        "request_id": ["fund", "hold", "escrow", "r-1"],
        "transfer_id": [transfer.transfer_id],
        "hold_id": [payments.CreateHold(hold, metadata=bank).hold.hold_id],
        "escrow_id": [payments.CreateEscrow(escrow, metadata=bank).escrow.escrow_id],
        "page_token": [entries.next_page_token, accounts.next_page_token],
        "cursor": [""],
        "paths": ["policy", "display_name"],
        "tenant_id": [keys["victim"][0], "acme-bank"],
        "key_id": [keys["victim"][1]],
    }
    return Probe(channel, {"tenant": keys["tenant"][2], "operator": keys["operator"][2]}, known)


def test_every_jubao_service_the_server_offers_is_probed(probe: Probe) -> None:
    reflected = ProtoReflectionDescriptorDatabase(probe.channel).get_services()
    assert {name for name in reflected if name.startswith("jubao.")} == set(POLICIES)
    assert {m.containing_service.full_name for m in METHODS} == set(POLICIES)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_no_request_gets_internal_unknown_or_a_bare_error(probe: Probe, method: MethodDescriptor) -> None:
    requests = Requests(probe.known)

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES_PER_METHOD,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(key=st.sampled_from(probe.callers(method)), body=requests.body(method.input_type))
    def check(key: str, body: bytes) -> None:
        error = probe.call(method, key, body)
        if error is not None:
            _check_error(method, error)

    check()


def _check_error(method: MethodDescriptor, error: grpc.RpcError) -> None:
    call: grpc.Call = error  # type: ignore[assignment]
    code = call.code()
    where = f"{method.full_name} answered {code.name} {call.details()!r} (JUBAO_FUZZ_SEED={SEED})"
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), where
    trailers = tuple(call.trailing_metadata() or ())
    details = [value for key, value in trailers if key == "grpc-status-details-bin"]
    if method.server_streaming and code == grpc.StatusCode.DEADLINE_EXCEEDED and not details:
        return  # the probe's own deadline ended a stream that was waiting for events
    assert len(details) == 1 and isinstance(details[0], bytes), where
    status = status_pb2.Status.FromString(details[0])
    assert status.code == code.value[0], where
    infos = [
        error_details_pb2.ErrorInfo() for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)
    ]
    for info, detail in zip(
        infos, (d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)), strict=True
    ):
        detail.Unpack(info)
    assert len(infos) == 1 and infos[0].domain == ERROR_DOMAIN and infos[0].reason, where
    size = _percent_encoded_bytes(call.details() or "") + sum(len(k) + len(v) for k, v in trailers)
    assert size < METADATA_MAX_BYTES, f"{where}: {size} bytes of metadata"


def _percent_encoded_bytes(message: str) -> int:
    """The size of `grpc-message` on the wire: bytes outside printable ASCII, and '%', take three."""
    return sum(1 if 0x20 <= byte < 0x7F and byte != 0x25 else 3 for byte in message.encode())
