"""Assemble and run the gRPC server: storage, catalogue seeding, services, health, reflection, TLS,
and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from jubao.admin.v1 import tenant_admin_pb2, tenant_admin_pb2_grpc
from jubao.meta.v1 import meta_pb2, meta_pb2_grpc
from jubao.payments.v1 import payments_pb2, payments_pb2_grpc

from jubao_server import limits
from jubao_server.clock import SYSTEM_CLOCK, Clock
from jubao_server.config import ServerSettings, Settings, TlsSettings
from jubao_server.payments.api import LedgerApi
from jubao_server.payments.ledger import Ledger
from jubao_server.payments.service import PaymentService
from jubao_server.payments.shard import Node
from jubao_server.platform.forwarding import Forwarder
from jubao_server.platform.idempotency import RequestLog
from jubao_server.platform.paging import PageTokens, load_page_secret
from jubao_server.platform.pipeline import CallPipeline, ServicePolicy
from jubao_server.platform.service import MetaService
from jubao_server.storage.contract import StorageBackend
from jubao_server.storage.factory import migrate_product, open_backend
from jubao_server.telemetry import Telemetry, setup_telemetry
from jubao_server.tenancy.auth import Authenticator
from jubao_server.tenancy.catalogue import load_catalogue
from jubao_server.tenancy.model import Product
from jubao_server.tenancy.quotas import QuotaGate
from jubao_server.tenancy.seed import seed_catalogue
from jubao_server.tenancy.service import TenantAdminService
from jubao_server.tenancy.store import TenantStore

log = structlog.get_logger("jubao.server")

ADMIN_SERVICE = tenant_admin_pb2.DESCRIPTOR.services_by_name["TenantAdmin"].full_name
META_SERVICE = meta_pb2.DESCRIPTOR.services_by_name["MetaService"].full_name
PAYMENTS_SERVICE = payments_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name
POLICIES = {
    ADMIN_SERVICE: ServicePolicy(operator_only=True),
    META_SERVICE: ServicePolicy(),
    PAYMENTS_SERVICE: ServicePolicy(product=Product.PAYMENTS),
}
storage_probe_interval_s = 5.0


@dataclasses.dataclass
class JubaoServer:
    settings: Settings
    telemetry: Telemetry
    backend: StorageBackend
    ledger: Ledger
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    pipeline: CallPipeline
    authenticator: Authenticator
    port: int
    clock: Clock
    _probe: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls, settings: Settings, telemetry: Telemetry | None = None, *, clock: Clock = SYSTEM_CLOCK
    ) -> JubaoServer:
        """Open storage, seed tenants, start serving; health turns SERVING only at the end."""
        telemetry = telemetry or setup_telemetry(settings.telemetry)
        backend = await open_backend(settings.storage, clock=clock)
        if settings.migrate_on_start:
            applied = await migrate_product(backend)
            log.info("schema migrated", backend=backend.name, applied=applied)
        store = TenantStore(backend, clock)
        if settings.tenancy.seed_catalogue:
            await seed_catalogue(store, load_catalogue(settings.tenancy.catalogue_dir), clock)
        authenticator = Authenticator(store, settings.tenancy.auth_cache_ttl_ms, clock)
        ledger = Ledger(backend, settings.payments)
        await ledger.start()
        forwarder = Forwarder(settings.server)
        pipeline = CallPipeline(
            POLICIES, authenticator, QuotaGate(clock), telemetry, settings.server, forwarder=forwarder
        )
        server = grpc.aio.server(interceptors=[pipeline], options=_channel_options(settings.server))
        health_servicer = health.aio.HealthServicer()
        _add_services(
            server,
            store,
            RequestLog(backend),
            authenticator,
            health_servicer,
            ledger=ledger,
            forwarder=forwarder,
            pages=PageTokens(await load_page_secret(backend, clock)),
            clock=clock,
        )
        port = _bind(server, settings.server)
        forwarder.address = f"{settings.server.advertise_host or settings.server.host}:{port}"
        ledger.node = Node.local(forwarder.address)
        await server.start()
        started = cls(
            settings,
            telemetry,
            backend,
            ledger,
            server,
            health_servicer,
            pipeline,
            authenticator,
            port,
            clock,
        )
        await started._set_health(health_pb2.HealthCheckResponse.SERVING)
        started._probe = asyncio.create_task(started._probe_storage())
        log.info("serving", address=f"{settings.server.host}:{port}", backend=backend.name)
        return started

    async def stop(self, grace_ms: int | None = None) -> None:
        """Drain: NOT_SERVING, refuse new calls, let in-flight calls finish within the grace period."""
        self.pipeline.draining = True
        await self.health.enter_graceful_shutdown()
        grace_s = (self.settings.server.shutdown_grace_ms if grace_ms is None else grace_ms) / 1000
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        await self.server.stop(grace_s)
        await self.ledger.stop()
        await self.pipeline.forwarder.close()
        await self.backend.close()
        self.telemetry.shutdown()
        log.info("stopped")

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for service in ("", *POLICIES):
            await self.health.set(service, status)

    async def _probe_storage(self) -> None:
        """Follow storage readiness in the health status until shutdown."""
        serving = True
        while not self.pipeline.draining:
            await self.clock.sleep(storage_probe_interval_s)
            ready = await self.backend.ready()
            if ready != serving and not self.pipeline.draining:
                serving = ready
                log.warning("storage readiness changed", ready=ready)
                status = (
                    health_pb2.HealthCheckResponse.SERVING
                    if ready
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                await self._set_health(status)


def _channel_options(settings: ServerSettings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.message_size_max_bytes),
        ("grpc.max_send_message_length", settings.message_size_max_bytes),
        ("grpc.max_concurrent_streams", settings.concurrent_streams_max),
        ("grpc.max_metadata_size", limits.metadata_value_max_bytes * 4),
    ]


def _add_services(
    server: grpc.aio.Server,
    store: TenantStore,
    request_log: RequestLog,
    authenticator: Authenticator,
    health_servicer: health.aio.HealthServicer,
    *,
    ledger: LedgerApi,
    forwarder: Forwarder,
    pages: PageTokens,
    clock: Clock,
) -> None:
    tenant_admin_pb2_grpc.add_TenantAdminServicer_to_server(
        TenantAdminService(store, request_log, authenticator, pages, clock), server
    )
    meta_pb2_grpc.add_MetaServiceServicer_to_server(MetaService(), server)
    payments_pb2_grpc.add_PaymentServiceServicer_to_server(
        PaymentService(ledger, forwarder, pages, clock), server
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    reflection.enable_server_reflection((*POLICIES, health_name, reflection.SERVICE_NAME), server)


def _bind(server: grpc.aio.Server, settings: ServerSettings) -> int:
    address = f"{settings.host}:{settings.port}"
    if not settings.tls.enabled:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, _server_credentials(settings.tls))


def _server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    def read(path: Path | None) -> bytes:
        return path.read_bytes() if path is not None else b""

    client_ca = read(tls.client_ca_path) if tls.client_ca_path is not None else None
    return grpc.ssl_server_credentials(
        [(read(tls.key_path), read(tls.cert_path))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )
