"""The gRPC server, assembled from the host's parts and the enabled products (`PRODUCTS`).

Start order: telemetry; the storage backend on the one clock; the schema (the platform's migration set,
then each product's); tenancy (the tenant store, seeded from the catalogue, the authenticator and the
quotas, all on the clock); the page-token secret; the call pipeline and the gRPC host, bound so that this
server's address is known; the platform's services (TenantAdmin, MetaService, BulkService); then each
product, started and its services added behind the pipeline with its entitlement as their policy; then
the bulk plane's apply worker, with each upload dataset's applier made from its running product; last the
host starts serving and health turns SERVING. Stop runs the other way: the host drains (NOT_SERVING, new
calls refused, in-flight calls given the grace period), the apply worker stops, the products stop in
reverse order, then forwarding, storage and telemetry close. A failed start undoes what it started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Final

import structlog
from jubao.admin.v1 import tenant_admin_pb2, tenant_admin_pb2_grpc
from jubao.bulk.v1 import bulk_pb2, bulk_pb2_grpc
from jubao.meta.v1 import meta_pb2, meta_pb2_grpc

from jubao_server.app import PRODUCTS, datasets, migrate
from jubao_server.bulk.apply import Applier, ApplyWorker
from jubao_server.bulk.datasets import UploadDataset
from jubao_server.bulk.service import BulkService
from jubao_server.bulk.store import BulkStore
from jubao_server.clock import SYSTEM_CLOCK, Clock
from jubao_server.config import Settings
from jubao_server.invariants import ensure
from jubao_server.platform.forwarding import Forwarder
from jubao_server.platform.idempotency import RequestLog
from jubao_server.platform.paging import PageTokens, load_page_secret
from jubao_server.platform.pipeline import CallPipeline, ServicePolicy
from jubao_server.platform.server import GrpcHost
from jubao_server.platform.service import MetaService
from jubao_server.products import GrpcService, ProductContext, Running, ServiceContext
from jubao_server.storage.contract import StorageBackend
from jubao_server.storage.factory import open_backend
from jubao_server.telemetry import Telemetry, setup_telemetry
from jubao_server.tenancy.auth import Authenticator
from jubao_server.tenancy.catalogue import load_catalogue
from jubao_server.tenancy.quotas import QuotaGate
from jubao_server.tenancy.seed import seed_catalogue
from jubao_server.tenancy.service import TenantAdminService
from jubao_server.tenancy.store import TenantStore

log = structlog.get_logger("jubao.server")

_ADMIN: Final = tenant_admin_pb2.DESCRIPTOR.services_by_name["TenantAdmin"]
_META: Final = meta_pb2.DESCRIPTOR.services_by_name["MetaService"]
_BULK: Final = bulk_pb2.DESCRIPTOR.services_by_name["BulkService"]
# Who may call each service: the platform's, then every product's (its tenants' entitlement).
POLICIES: Final = {
    _ADMIN.full_name: ServicePolicy(operator_only=True),
    _META.full_name: ServicePolicy(),
    _BULK.full_name: ServicePolicy(),
    **{api.full_name: ServicePolicy(product=p.entitlement) for p in PRODUCTS for api in p.apis},
}
ensure(len(POLICIES) == 3 + sum(len(p.apis) for p in PRODUCTS), "a product's service is the platform's")


@dataclasses.dataclass
class Jubao:
    """The running gRPC server."""

    settings: Settings
    telemetry: Telemetry
    backend: StorageBackend
    host: GrpcHost
    _started: contextlib.AsyncExitStack

    @property
    def port(self) -> int:
        return self.host.port

    @property
    def pipeline(self) -> CallPipeline:
        return self.host.pipeline

    @classmethod
    async def start(
        cls, settings: Settings, telemetry: Telemetry | None = None, *, clock: Clock = SYSTEM_CLOCK
    ) -> Jubao:
        """Assemble and start everything (see the module doc); health turns SERVING only at the end."""
        started = contextlib.AsyncExitStack()
        try:
            telemetry = telemetry or setup_telemetry(settings.telemetry)
            started.callback(telemetry.shutdown)
            backend = await open_backend(settings.storage, clock=clock)
            started.push_async_callback(backend.close)
            if settings.migrate_on_start:
                log.info("schema migrated", backend=backend.name, applied=await migrate(backend))
            store = TenantStore(backend, clock)
            if settings.tenancy.seed_catalogue:
                await seed_catalogue(store, load_catalogue(settings.tenancy.catalogue_dir), clock)
            authenticator = Authenticator(store, settings.tenancy.auth_cache_ttl_ms, clock)
            pages = PageTokens(await load_page_secret(backend, clock))
            forwarder = Forwarder(settings.server)
            started.push_async_callback(forwarder.close)
            pipeline = CallPipeline(
                authenticator, QuotaGate(clock), telemetry, settings.server, forwarder=forwarder
            )
            host = GrpcHost(settings.server, pipeline, backend, clock)
            # Only a failed start stops the host from here (`stop` drains it before the products stop).
            started.push_async_callback(host.stop, 0)
            forwarder.address = host.address
            admin = TenantAdminService(store, RequestLog(backend, clock), authenticator, pages, clock)
            bulk_store = BulkStore(backend, clock)
            for service in _platform_services(admin, BulkService(bulk_store, datasets(), pages)):
                host.add(service, POLICIES[service.name])
            context = ServiceContext(clock, pages, forwarder)
            appliers: dict[str, Applier] = {}
            products: dict[str, Running] = {}
            for product in PRODUCTS:
                section = product.settings_of(settings)
                running = await product.start(
                    ProductContext(
                        section, backend, clock, telemetry, host.address, host.members, dict(products)
                    )
                )
                started.push_async_callback(running.stop)
                products[product.name] = running
                services = product.services(running, context)
                declared = sorted(api.full_name for api in product.apis)
                ensure(sorted(s.name for s in services) == declared, f"{product.name} serves {declared}")
                for service in services:
                    host.add(service, POLICIES[service.name])
                for dataset in product.datasets:
                    if isinstance(dataset, UploadDataset):
                        appliers[dataset.name] = Applier(dataset.schemas, dataset.applier(running))
            worker = ApplyWorker(bulk_store, appliers, settings.bulk, clock, owner=host.address)
            worker.start()
            started.push_async_callback(worker.stop)
            await host.start()
        except BaseException:
            await started.aclose()
            raise
        return cls(settings, telemetry, backend, host, started)

    async def stop(self, grace_ms: int | None = None) -> None:
        """Drain the host within the grace period (the settings' unless told), then stop the products
        in reverse order and close what the start opened."""
        grace_s = (self.settings.server.shutdown_grace_ms if grace_ms is None else grace_ms) / 1000
        await self.host.stop(grace_s)
        await self._started.aclose()
        log.info("stopped")


def _platform_services(admin: TenantAdminService, bulk: BulkService) -> tuple[GrpcService, ...]:
    """TenantAdmin, MetaService and BulkService."""
    return (
        GrpcService(
            _ADMIN, functools.partial(tenant_admin_pb2_grpc.add_TenantAdminServicer_to_server, admin)
        ),
        GrpcService(_META, functools.partial(meta_pb2_grpc.add_MetaServiceServicer_to_server, MetaService())),
        GrpcService(_BULK, functools.partial(bulk_pb2_grpc.add_BulkServiceServicer_to_server, bulk)),
    )
