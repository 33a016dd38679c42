"""The fund transfer agency as the host sees it (the protocol: `jubao_server/products.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from jubao.fundta.v1 import fundta_pb2

from jubao_server.fundta import tables
from jubao_server.fundta.agency import Agency
from jubao_server.fundta.config import FundTaSettings
from jubao_server.fundta.requests import Requests
from jubao_server.platform.paging import load_secret
from jubao_server.products import GrpcService, ProductContext, ProductSpec, ServiceContext
from jubao_server.tenancy.model import Product

# The key of the investors' identity hashes (a platform secret, the same on every server).
IDENTITY_SECRET: Final = "fundta_identity"


class FundTa:
    """The running product: the agency and its request claims."""

    def __init__(self, agency: Agency, requests: Requests) -> None:
        self.agency = agency
        self.requests = requests

    async def stop(self) -> None:
        await self.agency.stop()


async def _start(context: ProductContext[FundTaSettings]) -> FundTa:
    key = await load_secret(context.backend, context.clock, IDENTITY_SECRET)
    settings = context.settings
    agency = Agency(context.backend, context.clock, key, settings.holder_shard_count)
    return FundTa(agency, Requests(context.backend, context.clock, settings.request_ttl_s))


def _services(running: FundTa, context: ServiceContext) -> list[GrpcService]:
    # The servicers (and gRPC with them) are imported when the gRPC host asks for them, not with PRODUCT.
    from jubao_server.fundta.service import grpc_services  # noqa: PLC0415

    return grpc_services(running.agency, running.requests, context)


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
)
