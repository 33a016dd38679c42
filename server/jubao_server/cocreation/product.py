"""The co-creation product as the host sees it (the protocol: `jubao_server/products.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from jubao.cocreation.v1 import cocreation_pb2

from jubao_server.cocreation import tables
from jubao_server.cocreation.config import CocreationSettings
from jubao_server.cocreation.demo import seed_demo
from jubao_server.cocreation.ingest import DatasetRowsUpload
from jubao_server.cocreation.results import QueryResultsExport
from jubao_server.cocreation.rooms import Cocreation
from jubao_server.cocreation.scoring import ScoresExport
from jubao_server.products import GrpcService, ProductContext, ProductSpec, ServiceContext
from jubao_server.tenancy.model import Product


async def _start(context: ProductContext[CocreationSettings]) -> Cocreation:
    settings = context.settings
    cocreation = Cocreation(
        context.backend, context.clock, settings.query_threads, model_lease_ms=settings.model_lease_ms
    )
    if settings.demo_orders:
        await seed_demo(cocreation.store, context.clock, settings.demo_orders)
    cocreation.start(settings.expiry_sweep_s)
    return cocreation


def _services(cocreation: Cocreation, context: ServiceContext) -> list[GrpcService]:
    # The servicer (and gRPC with it) is imported when the gRPC host asks for it, not with PRODUCT:
    # the Arrow Flight process reads PRODUCT and must not load gRPC (apache/arrow#13300).
    from jubao_server.cocreation.service import grpc_services  # noqa: PLC0415

    return grpc_services(cocreation, context)


PRODUCT: Final = ProductSpec(
    name="cocreation",
    entitlement=Product.COCREATION,
    settings=CocreationSettings,
    apis=(cocreation_pb2.DESCRIPTOR.services_by_name["CocreationService"],),
    tables=tables.ALL,
    migrations=Path(__file__).resolve().parent / "migrations",
    start=_start,
    services=_services,
    datasets=(DatasetRowsUpload(), ScoresExport(), QueryResultsExport()),
)
