"""The Arrow Flight server of the bulk plane (its own process: `app/flight_server.py`; it never
loads gRPC's Python package, which must not share a process with Arrow Flight: apache/arrow#13300).

Every call passes the same steps as a gRPC call: the `authorization` header resolves the tenant with the
same `Authenticator` (middleware, before the handler runs), the dataset's product must be enabled for it,
and its streams and bytes per second are bounded (`BulkQuotas`). Errors are `ApiError`s rendered as Flight
errors: the class follows the code (unauthenticated, unauthorized, unavailable, timed out, cancelled,
internal; any other code is a `FlightServerError`), the message starts with the reason, and `extra_info`
holds the serialized `google.rpc.Status` with its `ErrorInfo`, as gRPC's `grpc-status-details-bin` does.

Flight runs handlers on its own threads; storage is asyncio, so the process runs one event loop on a
thread of its own (`LoopThread`) and handlers wait for the coroutines they hand it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator, Mapping
from typing import Any, Final, TypeVar

import pyarrow as pa
import structlog
from google.protobuf.message import DecodeError, Message
from jubao.bulk.client import CERTIFICATE_HEADER
from jubao.bulk.v1 import bulk_pb2
from jubao.reasons import Reason
from opentelemetry import propagate, trace
from pyarrow import flight

from jubao_server import limits
from jubao_server.bulk.arrow import from_ipc
from jubao_server.bulk.datasets import (
    Datasets,
    ExportDataset,
    Ingest,
    IngestDataset,
    UploadDataset,
    check_batch_id,
    pack,
    parse,
    unpack,
)
from jubao_server.bulk.peer import ClientCertificates
from jubao_server.bulk.quotas import BulkQuotas
from jubao_server.bulk.store import BulkStore, ChecksumMismatch, Upload
from jubao_server.bulk.uploads import UploadSession
from jubao_server.bulk.views import upload_to_pb
from jubao_server.errors import ApiError, ErrorCode, echo, internal, not_found, unavailable
from jubao_server.invariants import InvariantViolation
from jubao_server.storage.contract import StorageBackend, StorageError
from jubao_server.telemetry import Telemetry
from jubao_server.tenancy.auth import Authenticator, Caller, Credentials, require_product

log = structlog.get_logger("jubao.bulk")

GET_UPLOAD: Final = "GetUpload"
GET_UPLOAD_RESULTS: Final = bulk_pb2.GetUploadResults.DESCRIPTOR.full_name
_AUTH: Final = "auth"
_ERROR_CLASSES: Final[dict[ErrorCode, type[flight.FlightError]]] = {
    ErrorCode.UNAUTHENTICATED: flight.FlightUnauthenticatedError,
    ErrorCode.PERMISSION_DENIED: flight.FlightUnauthorizedError,
    ErrorCode.UNAVAILABLE: flight.FlightUnavailableError,
    ErrorCode.DEADLINE_EXCEEDED: flight.FlightTimedOutError,
    ErrorCode.CANCELLED: flight.FlightCancelledError,
    ErrorCode.INTERNAL: flight.FlightInternalError,
}
T = TypeVar("T")


class LoopThread:
    """An asyncio event loop on a thread of its own, for coroutines handed over from Flight's threads."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="bulk-io", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def iterate(self, items: AsyncIterator[T]) -> Generator[T, None, None]:
        """An async iterator consumed from a Flight thread; the next item is read on the loop while the
        caller handles this one (a download's next storage pages are read while Flight sends a batch)."""
        pending = asyncio.run_coroutine_threadsafe(_next(items), self.loop)
        try:
            for _ in range(limits.bulk_export_rows_max):
                item = pending.result()
                if item is _END:
                    return
                pending = asyncio.run_coroutine_threadsafe(_next(items), self.loop)
                yield item  # type: ignore[misc]
        finally:
            pending.cancel()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


_END: Final = object()


async def _next(items: AsyncIterator[T]) -> T | object:
    """The next item, or `_END` once there is none."""
    return await anext(items, _END)


def flight_error(error: ApiError) -> flight.FlightError:
    """The Flight error of an `ApiError`: its class by code, the reason first in the message, and the
    serialized `google.rpc.Status` in `extra_info`."""
    status = error.to_status()
    kind = _ERROR_CLASSES.get(error.code, flight.FlightServerError)
    return kind(f"{error.code.name} {error.reason}: {status.message}", extra_info=status.SerializeToString())


def _api_error(error: BaseException, method: str) -> ApiError:
    if isinstance(error, ApiError):
        return error
    if isinstance(error, StorageError):
        log.warning("storage unavailable", method=method, error=str(error))
        return unavailable(Reason.STORAGE_UNAVAILABLE, "storage is unavailable; retry")
    if isinstance(error, ChecksumMismatch):
        log.error("stored data damaged", method=method, error=str(error))
        return ApiError(ErrorCode.DATA_LOSS, Reason.CHECKSUM_MISMATCH, str(error))
    level = "invariant violated" if isinstance(error, InvariantViolation) else "unexpected error"
    log.error(level, method=method, exc_info=error)
    return internal("internal error; it has been logged")


class _CallerMiddleware(flight.ServerMiddleware):  # type: ignore[misc]
    """The call's tenant, and its W3C trace context (`traceparent`), for the handler; under mutual TLS, a
    call without an API key has its tenant resolved by the handler (`certificate_header`), which alone
    sees the TLS peer."""

    def __init__(
        self, caller: Caller | None, carrier: dict[str, str], certificate_header: str | None
    ) -> None:
        self.caller = caller
        self.carrier = carrier
        self.certificate_header = certificate_header


@dataclasses.dataclass(frozen=True)
class _Call:
    caller: Caller
    carrier: dict[str, str]


class FlightTelemetry:
    """The gRPC server's call metrics, for Flight calls (`rpc.system` = `arrow_flight`), a span per call,
    and the Arrow bytes bulk streams move."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.tracer = telemetry.tracer
        self._calls = telemetry.calls
        meter = telemetry.meter_provider.get_meter("jubao.bulk")
        self.bytes = meter.create_counter("bulk.bytes", unit="By", description="Arrow bytes moved in bulk")

    def record(self, method: str, tenant_id: str, code: ErrorCode, elapsed_ms: float) -> None:
        self._calls.record(method, tenant_id, code.name, elapsed_ms)


class _AuthFactory(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    """Resolves every call's tenant from its `authorization` header before the handler runs, or, under
    mutual TLS and without one, from the client certificate once the handler sees the TLS peer
    (`bulk/peer.py`)."""

    def __init__(
        self,
        authenticator: Authenticator,
        io: LoopThread,
        telemetry: FlightTelemetry,
        certificates: ClientCertificates | None,
    ) -> None:
        self._authenticator = authenticator
        self._io = io
        self._telemetry = telemetry
        self._certificates = certificates

    def start_call(self, info: flight.CallInfo, headers: dict[str, list[str]]) -> _CallerMiddleware:
        """The caller (or, under mutual TLS without an API key, the certificate to resolve), or the call
        refused (and counted) with the reason."""
        started_s = time.perf_counter()
        values = headers.get("authorization") or []
        carrier = {name: found[0] for name in ("traceparent", "tracestate") if (found := headers.get(name))}
        if not values and self._certificates is not None:
            presented = headers.get(CERTIFICATE_HEADER) or []
            return _CallerMiddleware(None, carrier, presented[0] if presented else None)
        credentials = Credentials(values[0] if values else None, None)
        try:
            return _CallerMiddleware(
                self._io.run(self._authenticator.authenticate(credentials)), carrier, None
            )
        except BaseException as error:
            raise self._refused(_method_name(info.method), error, started_s) from None

    def by_certificate(self, method: str, header: str | None, tls_identity: bytes) -> Caller:
        """The caller the presented client certificate names, if it is the TLS peer's (else the call
        refused and counted, as by `start_call`)."""
        started_s = time.perf_counter()
        certificates = self._certificates
        try:
            if certificates is None:
                raise internal("a client certificate is read under mutual TLS only")
            pem = certificates.presented(header, tls_identity)
            return self._io.run(self._authenticator.authenticate(Credentials(None, pem)))
        except BaseException as error:
            raise self._refused(method, error, started_s) from None

    def _refused(self, method: str, error: BaseException, started_s: float) -> flight.FlightError:
        api_error = _api_error(error, method)
        elapsed_ms = (time.perf_counter() - started_s) * 1000
        self._telemetry.record(method, "-", api_error.code, elapsed_ms)
        return flight_error(api_error)


class BulkFlightServer(flight.FlightServerBase):  # type: ignore[misc]
    def __init__(
        self,
        location: str,
        *,
        io: LoopThread,
        authenticator: Authenticator,
        store: BulkStore,
        backend: StorageBackend,
        datasets: Datasets,
        quotas: BulkQuotas,
        telemetry: Telemetry,
        tls_certificates: list[tuple[bytes, bytes]] | None = None,
        root_certificates: bytes | None = None,
    ) -> None:
        observed = FlightTelemetry(telemetry)
        certificates = ClientCertificates(root_certificates) if root_certificates is not None else None
        self._auth = _AuthFactory(authenticator, io, observed, certificates)
        super().__init__(
            location,
            middleware={_AUTH: self._auth},
            tls_certificates=tls_certificates or [],
            verify_client=root_certificates is not None,
            root_certificates=root_certificates,
        )
        self._io = io
        self._store = store
        self._backend = backend
        self._datasets = datasets
        self._quotas = quotas
        self._telemetry = observed

    # Flight methods

    def list_flights(self, context: flight.ServerCallContext, criteria: bytes) -> Iterator[flight.FlightInfo]:
        call = self._call(context, "ListFlights")
        infos = self._guarded("ListFlights", call, lambda: self._io.run(self._result_infos(call.caller)))
        yield from infos

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        call = self._call(context, "GetFlightInfo")
        return self._guarded("GetFlightInfo", call, lambda: self._flight_info(call.caller, descriptor))

    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> flight.FlightDataStream:
        call = self._call(context, "DoGet")
        return self._guarded("DoGet", call, lambda: self._download(call.caller, ticket.ticket))

    def do_put(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        call = self._call(context, "DoPut")
        self._guarded("DoPut", call, lambda: self._upload(call.caller, descriptor, reader, writer))

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        return [(GET_UPLOAD, "GetUploadRequest -> GetUploadResponse: an upload and its progress")]

    def do_action(self, context: flight.ServerCallContext, action: flight.Action) -> Iterator[bytes]:
        call = self._call(context, "DoAction")
        body = action.body.to_pybytes() if action.body is not None else b""
        answer = self._guarded(
            "DoAction", call, lambda: self._io.run(self._action(call.caller, action.type, body))
        )
        yield answer.SerializeToString()

    # Steps

    def _call(self, context: flight.ServerCallContext, method: str) -> _Call:
        middleware = context.get_middleware(_AUTH)
        if not isinstance(middleware, _CallerMiddleware):
            raise flight_error(internal("the call was not authenticated"))
        caller = middleware.caller
        if caller is None:
            caller = self._auth.by_certificate(method, middleware.certificate_header, context.peer_identity())
        return _Call(caller, middleware.carrier)

    def _guarded(self, method: str, call: _Call, step: Callable[[], T]) -> T:
        """Run a handler's step in a span, count it, and answer its failure as a Flight error. (A DoGet's
        stream is sent after its step: its bytes are counted by `_paced`.)"""
        started_s = time.perf_counter()
        tenant_id = call.caller.tenant.tenant_id
        attributes = {"rpc.system": "arrow_flight", "rpc.method": method, "jubao.tenant_id": tenant_id}
        code = ErrorCode.OK
        with self._telemetry.tracer.start_as_current_span(
            f"jubao.bulk/{method}",
            context=propagate.extract(call.carrier),
            kind=trace.SpanKind.SERVER,
            attributes=attributes,
        ) as span:
            try:
                return step()
            except BaseException as error:
                api_error = _api_error(error, method)
                code = api_error.code
                span.set_status(trace.Status(trace.StatusCode.ERROR, code.name))
                log.info("bulk call refused", method=method, tenant_id=tenant_id, reason=api_error.reason)
                raise flight_error(api_error) from None
            finally:
                elapsed_ms = (time.perf_counter() - started_s) * 1000
                self._telemetry.record(method, tenant_id, code, elapsed_ms)

    def _upload_dataset(self, caller: Caller, name: str) -> UploadDataset:
        return _entitled(caller, self._datasets.uploads, name, "upload")

    def _export_dataset(self, caller: Caller, name: str) -> ExportDataset:
        return _entitled(caller, self._datasets.exports, name, "download")

    def _flight_info(self, caller: Caller, descriptor: flight.FlightDescriptor) -> flight.FlightInfo:
        name, value = unpack(descriptor.command or b"", "descriptor.cmd")
        if name in self._datasets.ingests:
            ingest = self._io.run(self._ingest(caller, name, value))
            return flight.FlightInfo(ingest.schema, descriptor, [], ingest.rows_received, -1)
        if name in self._datasets.uploads:
            dataset = self._upload_dataset(caller, name)
            dataset.batch_id(value)
            return flight.FlightInfo(dataset.schemas.rows, descriptor, [], -1, -1)
        if name == GET_UPLOAD_RESULTS:
            upload, dataset = self._io.run(self._owned_upload(caller, value))
            endpoint = flight.FlightEndpoint(descriptor.command, [])
            rows = upload.rows_applied + upload.rows_failed
            return flight.FlightInfo(dataset.schemas.results, descriptor, [endpoint], rows, -1)
        export = self._export_dataset(caller, name)
        command = export.check(value)
        schema = export.schema
        if schema is None:
            schema, _, read = self._export(caller, export, command)
            read.close()
        return flight.FlightInfo(schema, descriptor, [flight.FlightEndpoint(descriptor.command, [])], -1, -1)

    def _download(self, caller: Caller, ticket: bytes) -> flight.FlightDataStream:
        name, value = unpack(ticket, "ticket")
        tenant_id = caller.tenant.tenant_id
        batches: Iterator[pa.RecordBatch | pa.Table]
        if name == GET_UPLOAD_RESULTS:
            upload, dataset = self._io.run(self._owned_upload(caller, value))
            batches = self._results(tenant_id, upload, dataset)
            schema = dataset.schemas.results
        else:
            export = self._export_dataset(caller, name)
            schema, first, read = self._export(caller, export, export.check(value))
            batches = _prepended(first, read)
        return flight.GeneratorStream(schema, self._paced(tenant_id, batches))

    def _export(
        self, caller: Caller, export: ExportDataset, command: Message
    ) -> tuple[pa.Schema, pa.RecordBatch | None, Generator[pa.RecordBatch, None, None]]:
        """The export's schema, its first batch and the others. The first batch is read now, so that an
        export refused by what storage holds (a fund the caller may not see) is the call's error, not a
        broken stream, and an export whose schema is its command's has it."""
        tenant_id = caller.tenant.tenant_id
        read = self._io.iterate(export.read(self._backend, self._store.clock, tenant_id, command))
        first = next(read, None)
        schema = export.schema if export.schema is not None else first.schema if first is not None else None
        if schema is None:
            raise internal(f"the export {export.name} gave no schema")
        return schema, first, read

    def _paced(
        self, tenant_id: str, batches: Iterator[pa.RecordBatch | pa.Table]
    ) -> Iterator[pa.RecordBatch]:
        """The stream's batches, paced and counted; a failure once the stream has started (its first batch
        sent, or the stream over the tenant's cap) ends it with its Flight error and reason, as
        `_guarded` answers one before."""
        try:
            with self._quotas.stream(tenant_id):
                for batch in batches:
                    self._quotas.pace(tenant_id, batch.nbytes)
                    self._telemetry.bytes.add(
                        batch.nbytes, {"jubao.tenant_id": tenant_id, "direction": "out"}
                    )
                    yield from batch.to_batches() if isinstance(batch, pa.Table) else (batch,)
        except Exception as error:
            api_error = _api_error(error, "DoGet")
            log.info("bulk stream failed", tenant_id=tenant_id, reason=api_error.reason)
            raise flight_error(api_error) from None

    def _results(self, tenant_id: str, upload: Upload, dataset: UploadDataset) -> Iterator[pa.Table]:
        for data in self._io.iterate(self._store.results(tenant_id, upload.batch_id)):
            yield from_ipc(data, dataset.schemas.results)

    def _upload(
        self,
        caller: Caller,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        name, value = unpack(descriptor.command or b"", "descriptor.cmd")
        tenant_id = caller.tenant.tenant_id
        with self._quotas.stream(tenant_id):
            session: Ingest
            if name in self._datasets.ingests:
                session = self._io.run(self._ingest(caller, name, value))
            else:
                dataset = self._upload_dataset(caller, name)
                session = self._io.run(UploadSession.open(self._store, tenant_id, dataset, value))
            for _ in range(limits.bulk_upload_rows_max + 2):
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    return
                metadata = _chunk_metadata(chunk.app_metadata)
                if chunk.data is not None:
                    self._quotas.pace(tenant_id, chunk.data.nbytes)
                    self._telemetry.bytes.add(
                        chunk.data.nbytes, {"jubao.tenant_id": tenant_id, "direction": "in"}
                    )
                    progress = self._io.run(session.receive(chunk.data, metadata.first_row))
                    writer.write(progress.SerializeToString())
                if metadata.commit:
                    writer.write(self._io.run(session.commit(metadata.rows_total)).SerializeToString())
                    log.info("upload committed", tenant_id=tenant_id, dataset=name)

    async def _ingest(self, caller: Caller, name: str, command: bytes) -> Ingest:
        dataset = _entitled(caller, self._datasets.ingests, name, "upload")
        return await dataset.open(self._backend, self._store.clock, caller.tenant.tenant_id, command)

    async def _owned_upload(self, caller: Caller, command: bytes) -> tuple[Upload, UploadDataset]:
        """The caller's upload the command names (NOT_FOUND for another tenant's: batch ids are scoped to
        their tenant), and its dataset."""
        request = parse(bulk_pb2.GetUploadResults, command, "ticket")
        batch_id = check_batch_id(request.batch_id)  # type: ignore[attr-defined]
        return await self._checked_upload(caller, batch_id)

    async def _checked_upload(self, caller: Caller, batch_id: str) -> tuple[Upload, UploadDataset]:
        upload = await self._store.get(caller.tenant.tenant_id, batch_id)
        if upload is None:
            raise not_found(Reason.UPLOAD_NOT_FOUND, f"no upload {batch_id}", batch_id=batch_id)
        return upload, self._upload_dataset(caller, upload.dataset)

    async def _action(self, caller: Caller, kind: str, body: bytes) -> bulk_pb2.GetUploadResponse:
        if kind != GET_UPLOAD:
            raise ApiError(ErrorCode.UNIMPLEMENTED, Reason.INVALID_ARGUMENT, f"no action {echo(kind)}")
        return await self._get_upload(caller, body)

    async def _get_upload(self, caller: Caller, body: bytes) -> bulk_pb2.GetUploadResponse:
        request = bulk_pb2.GetUploadRequest()
        try:
            request.ParseFromString(body)
        except DecodeError:
            raise ApiError(
                ErrorCode.INVALID_ARGUMENT, Reason.MALFORMED_REQUEST, "the body is not a GetUploadRequest"
            ) from None
        upload, _ = await self._checked_upload(caller, check_batch_id(request.batch_id))
        return bulk_pb2.GetUploadResponse(upload=upload_to_pb(upload))

    async def _result_infos(self, caller: Caller) -> list[flight.FlightInfo]:
        """A FlightInfo for the results of each of the caller's uploads (the first
        `bulk_list_flights_max`)."""
        uploads, _ = await self._store.list_uploads(
            caller.tenant.tenant_id, None, limits.bulk_list_flights_max
        )
        infos = []
        for upload in uploads:
            dataset = self._datasets.uploads.get(upload.dataset)
            if dataset is None or dataset.product not in caller.tenant.products:
                continue
            command = pack(bulk_pb2.GetUploadResults(batch_id=upload.batch_id))
            descriptor = flight.FlightDescriptor.for_command(command)
            endpoint = flight.FlightEndpoint(command, [])
            rows = upload.rows_applied + upload.rows_failed
            infos.append(flight.FlightInfo(dataset.schemas.results, descriptor, [endpoint], rows, -1))
        return infos


D = TypeVar("D", UploadDataset, ExportDataset, IngestDataset)


def _entitled(caller: Caller, datasets: Mapping[str, D], name: str, kind: str) -> D:
    """The dataset `name`, if the caller's tenant has its product (else PERMISSION_DENIED)."""
    dataset = datasets.get(name)
    if dataset is None:
        raise ApiError(ErrorCode.INVALID_ARGUMENT, Reason.INVALID_ARGUMENT, f"no {kind} dataset {name}")
    require_product(caller, dataset.product)
    return dataset


def _prepended(first: T | None, rest: Iterator[T]) -> Iterator[T]:
    """`first` (unless None), then `rest`."""
    if first is not None:
        yield first
    yield from rest


def _method_name(method: flight.FlightMethod) -> str:
    """`DoPut` for `FlightMethod.DO_PUT`, as the handlers name their calls."""
    return "".join(part.capitalize() for part in str(method.name).split("_"))


def _chunk_metadata(data: pa.Buffer | None) -> bulk_pb2.UploadChunk:
    metadata = bulk_pb2.UploadChunk()
    if data is None:
        return metadata
    try:
        metadata.ParseFromString(data.to_pybytes())
    except DecodeError:
        raise ApiError(
            ErrorCode.INVALID_ARGUMENT, Reason.MALFORMED_REQUEST, "app_metadata is not an UploadChunk"
        ) from None
    return metadata
