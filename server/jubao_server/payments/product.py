"""The payments product as the host sees it (the protocol: `jubao_server/products.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from jubao.payments.v1 import payments_pb2

from jubao_server.payments import tables
from jubao_server.payments.bulk import EntriesExport, TransfersUpload
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.data_migrations import DATA_MIGRATIONS
from jubao_server.payments.ledger import Ledger
from jubao_server.products import GrpcService, ProductContext, ProductSpec, ServiceContext
from jubao_server.shards.node import Node
from jubao_server.storage.contract.migrations import SHARED_SET_BEFORE_PRODUCTS
from jubao_server.tenancy.model import Product


async def _start(context: ProductContext[PaymentsSettings]) -> Ledger:
    """The ledger of this process. It acquires a tenant's shards when they are first used, leased to this
    process's address (the other servers forward the calls that need them here); `stop` gives them up."""
    ledger = Ledger(
        context.backend,
        context.settings,
        Node.local(context.address, members=context.members),
        clock=context.clock,
    )
    await ledger.start()
    return ledger


def _services(ledger: Ledger, context: ServiceContext) -> list[GrpcService]:
    # The servicer (and gRPC with it) is imported when the gRPC host asks for it, not with PRODUCT:
    # the Arrow Flight process reads PRODUCT and must not load gRPC (apache/arrow#13300).
    from jubao_server.payments.service import grpc_services  # noqa: PLC0415

    return grpc_services(ledger, context)


PRODUCT: Final = ProductSpec(
    name="payments",
    entitlement=Product.PAYMENTS,
    settings=PaymentsSettings,
    apis=(payments_pb2.DESCRIPTOR.services_by_name["PaymentService"],),
    tables=(
        tables.SHARDS,
        tables.ENTRIES,
        tables.TRANSFERS,
        tables.REQUESTS,
        tables.CLAIMS,
        tables.CLAIMS_MOVED,
        tables.TENANT_CONFIG,
    ),
    migrations=Path(__file__).resolve().parent / "migrations",
    migrations_formerly=SHARED_SET_BEFORE_PRODUCTS,
    data_migrations=DATA_MIGRATIONS,
    start=_start,
    services=_services,
    datasets=(TransfersUpload(), EntriesExport()),
)
