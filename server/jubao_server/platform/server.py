"""The gRPC host: one `grpc.aio` server behind the call pipeline, serving the services it is given (each
guarded by its policy), with health per service, reflection, TLS, a storage probe and draining shutdown.
It knows no product: the composition root (`app/grpc_server.py`) binds it, adds the platform's and the
products' services, and starts it."""

from __future__ import annotations

import asyncio
import contextlib
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.config import ServerSettings, TlsSettings
from jubao_server.invariants import ensure
from jubao_server.platform.pipeline import CallPipeline, ServicePolicy
from jubao_server.products import GrpcService
from jubao_server.storage.contract import StorageBackend

log = structlog.get_logger("jubao.server")

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
storage_probe_interval_s = 5.0


class GrpcHost:
    def __init__(
        self,
        settings: ServerSettings,
        pipeline: CallPipeline,
        backend: StorageBackend,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self._backend = backend
        self._clock = clock
        self.server = grpc.aio.server(interceptors=[pipeline], options=_channel_options(settings))
        self.port = _bind(self.server, settings, settings.port)
        # A port of this process's own when it shares `port` with the other processes of its machine.
        self.own_port = _bind(self.server, settings, settings.own_port) if settings.own_port else self.port
        self.health = health.aio.HealthServicer()
        self._services: list[str] = []
        self._probe: asyncio.Task[None] | None = None
        self._started = False
        self._stopped = False

    @property
    def services(self) -> tuple[str, ...]:
        """The full names of the services added so far."""
        return tuple(self._services)

    @property
    def address(self) -> str:
        """Where the other servers of the cluster reach this one (this process, on its own port)."""
        return f"{self.settings.advertise_host or self.settings.host}:{self.own_port}"

    @property
    def members(self) -> tuple[str, ...]:
        """The own addresses of the server processes of this machine (`ServerSettings.members`)."""
        return self.settings.members

    def add(self, service: GrpcService, policy: ServicePolicy) -> None:
        """Serve `service` behind the pipeline with `policy`; before `start` only."""
        ensure(not self._started, "services are added before the server starts")
        self.pipeline.guard(service.name, policy)
        service.add_to_server(_generic_only(self.server))
        self._services.append(service.name)

    async def start(self) -> None:
        """Start serving; health turns SERVING for every service, then follows storage readiness."""
        health_pb2_grpc.add_HealthServicer_to_server(self.health, _generic_only(self.server))
        reflected = (*self._services, HEALTH_SERVICE, reflection.SERVICE_NAME)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer(reflected), _generic_only(self.server)
        )
        await self.server.start()
        self._started = True
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self._probe = asyncio.create_task(self._probe_storage())
        log.info("serving", address=f"{self.settings.host}:{self.port}", backend=self._backend.name)

    async def stop(self, grace_s: float) -> None:
        """Drain: NOT_SERVING, refuse new calls, let in-flight calls finish within `grace_s`. Once."""
        if self._stopped:
            return
        self._stopped = True
        self.pipeline.draining = True
        await self.health.enter_graceful_shutdown()
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        if not self._started:
            # gRPC closes the listening socket of a server that started, never of one that did not (a
            # failed start): started while draining, it answers nothing of ours and then lets the port go.
            await self.server.start()
        await self.server.stop(grace_s)

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for service in ("", *self._services):
            await self.health.set(service, status)

    async def _probe_storage(self) -> None:
        """Follow storage readiness in the health status until shutdown."""
        serving = True
        while not self.pipeline.draining:
            await self._clock.sleep(storage_probe_interval_s)
            ready = await self._backend.ready()
            if ready != serving and not self.pipeline.draining:
                serving = ready
                log.warning("storage readiness changed", ready=ready)
                status = (
                    health_pb2.HealthCheckResponse.SERVING
                    if ready
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                await self._set_health(status)


class _GenericHandlersOnly:
    """A server as the generated `add_<Service>Servicer_to_server` sees it, whose handlers join as generic
    handlers only: the registration of each method ("registered methods") is left out.

    `grpc.aio` keeps one task waiting for the next call of each registered method, and its serving loop
    waits for all of them with `asyncio.wait` before each call it takes: that is a set, a check and a
    callback added and removed per registered method, on every call. With every method of jubao's
    services registered (74), it was about 50 µs of CPU per call, a seventh of an empty call's.
    Generic handlers find a method by the dictionary of its service instead. Health and reflection
    join the same way, so the loop waits for one task only."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server
        # The services whose generic handler was added: only theirs may have their registration left out.
        self._served: set[str] = set()

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._served.update(h.service_name() for h in handlers if isinstance(h, grpc.ServiceRpcHandler))
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler[typing.Any, typing.Any]]
    ) -> None:
        """Left out: the generic handler added before it serves the same methods (the generated code
        adds both, the generic one first); a registration without one would leave its methods unserved."""
        ensure(service in self._served, f"{service}: registered without a generic handler to serve it")


def _generic_only(server: grpc.aio.Server) -> grpc.aio.Server:
    return typing.cast(grpc.aio.Server, _GenericHandlersOnly(server))


def _channel_options(settings: ServerSettings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.message_size_max_bytes),
        ("grpc.max_send_message_length", settings.message_size_max_bytes),
        ("grpc.max_concurrent_streams", settings.concurrent_streams_max),
        ("grpc.max_metadata_size", limits.metadata_value_max_bytes * 4),
    ]


def _bind(server: grpc.aio.Server, settings: ServerSettings, port: int) -> int:
    """Listen on `port` (gRPC sets SO_REUSEPORT: the processes of one machine share a port)."""
    address = f"{settings.host}:{port}"
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
