"""The fund transfer agency as the host sees it (the protocol: `jubao_server/products.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from jubao.fundta.v1 import fundta_pb2

from jubao_server.fundta import tables
from jubao_server.fundta.agency import Agency
from jubao_server.fundta.bulk import ConfirmationsExport
from jubao_server.fundta.config import FundTaSettings
from jubao_server.fundta.data_migrations import DATA_MIGRATIONS
from jubao_server.fundta.dayclose import DayCloses
from jubao_server.fundta.requests import Requests
from jubao_server.fundta.statement import Statements
from jubao_server.invariants import unreachable
from jubao_server.payments.ledger import Ledger
from jubao_server.platform.paging import load_secret
from jubao_server.products import GrpcService, ProductContext, ProductSpec, ServiceContext
from jubao_server.tenancy.model import Product

# The key of the investors' identity hashes (a platform secret, the same on every server).
IDENTITY_SECRET: Final = "fundta_identity"


class FundTa:
    """The running product: the agency, its request claims, the day-closes running here and the
    statements."""

    def __init__(self, agency: Agency, requests: Requests, closes: DayCloses) -> None:
        self.agency = agency
        self.requests = requests
        self.closes = closes
        self.statements = Statements(agency, agency.backend)

    async def stop(self) -> None:
        await self.closes.stop()
        await self.agency.stop()


async def _start(context: ProductContext[FundTaSettings]) -> FundTa:
    key = await load_secret(context.backend, context.clock, IDENTITY_SECRET)
    settings = context.settings
    agency = Agency(context.backend, context.clock, key, settings.holder_shard_count)
    requests = Requests(context.backend, context.clock, settings.request_ttl_s)
    ledger = context.started.get("payments")
    if not isinstance(ledger, Ledger):
        unreachable("fund_ta settles through the payments ledger: start payments first")
    closes = DayCloses(agency, context.backend, context.clock, ledger)
    return FundTa(agency, requests, closes)


def _services(running: FundTa, context: ServiceContext) -> list[GrpcService]:
    # The servicers (and gRPC with them) are imported when the gRPC host asks for them, not with PRODUCT.
    from jubao_server.fundta.service import grpc_services  # noqa: PLC0415

    return grpc_services(running, context)


PRODUCT: Final = ProductSpec(
    name="fund_ta",
    entitlement=Product.FUND_TA,
    settings=FundTaSettings,
    apis=(
        fundta_pb2.DESCRIPTOR.services_by_name["FundService"],
        fundta_pb2.DESCRIPTOR.services_by_name["TradingService"],
    ),
    tables=tables.ALL,
    migrations=Path(__file__).resolve().parent / "migrations",
    start=_start,
    services=_services,
    datasets=(ConfirmationsExport(),),
    data_migrations=DATA_MIGRATIONS,
)
