"""The bulk plane's client: uploads and downloads over Arrow Flight, with the same API key as gRPC.

An upload is resumable and exactly once: `upload` first asks how many rows of the batch are stored, skips
them in the source, sends the rest in numbered messages (each acknowledged once durable) and commits with
the total; calling it again with the same batch id after any failure continues where the stored rows end,
and after a commit it only confirms it. Errors are the typed exceptions of `jubao.errors`, decoded from
the `google.rpc.Status` a Flight error carries, exactly as for gRPC calls.

This module never imports gRPC's Python package, which must not share a process with Arrow Flight
(apache/arrow#13300).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import itertools
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final

import pyarrow as pa
from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from pyarrow import flight

from jubao.bulk import schemas
from jubao.bulk.files import Source, batches_of
from jubao.bulk.v1 import bulk_pb2
from jubao.client.config import ClientConfig, read_file
from jubao.cocreation.v1 import cocreation_pb2
from jubao.errors import JubaoError, error_from_status
from jubao.fundta.v1 import fundta_pb2
from jubao.reasons import Code, Reason

DEFAULT_LOCATION: Final = "grpc+tcp://127.0.0.1:50052"
GET_UPLOAD: Final = "GetUpload"
# Under mutual TLS: the client certificate, base64 of its DER (the server checks it is the TLS peer's).
CERTIFICATE_HEADER: Final = "x-jubao-client-certificate"
_PEM_END: Final = "-----END CERTIFICATE-----"
# Rows per DoPut message the client sends (the server takes up to 65,536).
MESSAGE_ROWS: Final = 16_384
WAIT_POLL_S: Final = 0.5
_CODE_OF_CLASS: Final = (
    (flight.FlightUnauthenticatedError, Code.UNAUTHENTICATED),
    (flight.FlightUnauthorizedError, Code.PERMISSION_DENIED),
    (flight.FlightUnavailableError, Code.UNAVAILABLE),
    (flight.FlightTimedOutError, Code.DEADLINE_EXCEEDED),
    (flight.FlightCancelledError, Code.CANCELLED),
)

# Called with (rows, bytes) moved so far.
Progress = Callable[[int, int], None]


def error_from_flight(error: flight.FlightError | pa.ArrowException) -> JubaoError:
    """The typed exception of a failed Flight call: from the `google.rpc.Status` in its `extra_info`,
    else (an error of the transport itself) by its class."""
    extra = getattr(error, "extra_info", None) or b""
    status = status_pb2.Status()
    try:
        status.ParseFromString(extra)
    except DecodeError:
        status = status_pb2.Status()
    if status.code:
        return error_from_status(status.code, status, str(error))
    code = next((c for kind, c in _CODE_OF_CLASS if isinstance(error, kind)), Code.UNKNOWN)
    return error_from_status(code, None, str(error))


def certificate_header(cert_chain: bytes) -> bytes:
    """The value of `CERTIFICATE_HEADER`: base64 of the DER of the chain's first (the client's own)
    certificate."""
    text = cert_chain.decode("ascii")
    end = text.find(_PEM_END)
    if end < 0:
        raise ValueError("the client certificate is not PEM")
    return base64.b64encode(ssl.PEM_cert_to_DER_cert(text[: end + len(_PEM_END)]))


def pack(command: Message) -> bytes:
    """A command as descriptors and tickets carry it: a serialized `google.protobuf.Any`."""
    packed = any_pb2.Any()
    packed.Pack(command)
    return packed.SerializeToString()


def _timestamp(moment: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC))
    return stamp


@dataclasses.dataclass(frozen=True)
class UploadReceipt:
    batch_id: str
    rows_received: int
    rows_rejected: int
    rows_sent: int
    bytes_sent: int


class BulkClient:
    """A client of the bulk plane at `location` (`grpc+tcp://host:port`, or `grpc+tls://` with TLS).

    Under mutual TLS, `cert_chain` and `private_key` (PEM) are the client certificate and its key: without
    an API key, the certificate names the tenant. The client also sends the certificate in a header
    (`CERTIFICATE_HEADER`), since Arrow Flight does not give the server the one of the TLS session; the
    server accepts it only as the TLS peer's own."""

    def __init__(
        self,
        location: str = DEFAULT_LOCATION,
        api_key: str | None = None,
        *,
        tls_root_certs: bytes | None = None,
        cert_chain: bytes | None = None,
        private_key: bytes | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self._client = flight.FlightClient(
            location, tls_root_certs=tls_root_certs, cert_chain=cert_chain, private_key=private_key
        )
        headers = [(b"authorization", f"Bearer {api_key}".encode())] if api_key else []
        if cert_chain is not None:
            headers.append((CERTIFICATE_HEADER.encode(), certificate_header(cert_chain)))
        self._options = flight.FlightCallOptions(headers=headers, timeout=timeout_s)

    @classmethod
    def of(cls, config: ClientConfig) -> BulkClient:
        """The client of the bulk server `config` names (`bulk_endpoint`), with its credentials and TLS."""
        scheme = "grpc+tls" if config.uses_tls else "grpc+tcp"
        return cls(
            f"{scheme}://{config.bulk_endpoint}",
            config.api_key,
            tls_root_certs=read_file(config.root_certificates_path, "CA certificate"),
            cert_chain=read_file(config.client_certificate_path, "client certificate"),
            private_key=read_file(config.client_key_path, "client key"),
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> BulkClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Uploads

    def upload_transfers(
        self, batch_id: str, source: Source, *, progress: Progress | None = None
    ) -> UploadReceipt:
        """Upload payments transfers (`schemas.TRANSFERS`) as the batch `batch_id`, resuming it."""
        return self.upload(bulk_pb2.UploadTransfers(batch_id=batch_id), source, progress=progress)

    def upload(self, command: Message, source: Source, *, progress: Progress | None = None) -> UploadReceipt:
        """Upload `source` with the upload command `command`, from where the stored rows end; commit.
        The rows go with their own schema: the server checks it against the dataset's."""
        dataset = schemas.UPLOADS[command.DESCRIPTOR.full_name]
        batch_id: str = getattr(command, "batch_id")  # noqa: B009
        stored = self.find_upload(batch_id)
        start = stored.rows_received if stored is not None else 0
        descriptor = flight.FlightDescriptor.for_command(pack(command))
        try:
            batches = batches_of(source, dataset.rows)
            first = next(batches, None)
            schema = first.schema if first is not None else dataset.rows
            sent = itertools.chain([first] if first is not None else [], batches)
            return self.put(batch_id, descriptor, schema, sent, start=start, progress=progress)
        except (flight.FlightError, pa.ArrowException) as error:
            raise error_from_flight(error) from error

    def flight_info(self, descriptor: flight.FlightDescriptor) -> flight.FlightInfo:
        """GetFlightInfo of a command: its schema, and for an upload the rows stored so far."""
        return self._client.get_flight_info(descriptor, options=self._options)

    def put(
        self,
        batch_id: str,
        descriptor: flight.FlightDescriptor,
        schema: pa.Schema,
        batches: Iterable[pa.RecordBatch],
        *,
        start: int,
        progress: Progress | None,
    ) -> UploadReceipt:
        writer, acks = self._client.do_put(descriptor, schema, options=self._options)
        row = sent_rows = sent_bytes = 0
        answer = bulk_pb2.UploadProgress()
        with writer:
            for batch in batches:
                for offset in range(0, batch.num_rows, MESSAGE_ROWS):
                    part = batch.slice(offset, MESSAGE_ROWS)
                    first, row = row, row + part.num_rows
                    if row <= start:
                        continue
                    if first < start:
                        part, first = part.slice(start - first), start
                    writer.write_with_metadata(
                        part, bulk_pb2.UploadChunk(first_row=first).SerializeToString()
                    )
                    answer = _ack(acks)
                    sent_rows += part.num_rows
                    sent_bytes += part.nbytes
                    if progress is not None:
                        progress(start + sent_rows, sent_bytes)
            writer.write_metadata(bulk_pb2.UploadChunk(commit=True, rows_total=row).SerializeToString())
            answer = _ack(acks)
            writer.done_writing()
        return UploadReceipt(batch_id, answer.rows_received, answer.rows_rejected, sent_rows, sent_bytes)

    def find_upload(self, batch_id: str) -> bulk_pb2.Upload | None:
        """The upload, or None when the caller's tenant has none of this batch id."""
        try:
            return self.get_upload(batch_id)
        except JubaoError as error:
            if error.reason == Reason.UPLOAD_NOT_FOUND:
                return None
            raise

    def get_upload(self, batch_id: str) -> bulk_pb2.Upload:
        body = bulk_pb2.GetUploadRequest(batch_id=batch_id).SerializeToString()
        try:
            answers = list(self._client.do_action(flight.Action(GET_UPLOAD, body), options=self._options))
        except (flight.FlightError, pa.ArrowException) as error:
            raise error_from_flight(error) from error
        return bulk_pb2.GetUploadResponse.FromString(answers[0].body.to_pybytes()).upload

    def wait(
        self,
        batch_id: str,
        *,
        timeout_s: float | None = None,
        progress: Callable[[bulk_pb2.Upload], None] | None = None,
    ) -> bulk_pb2.Upload:
        """Poll the upload until every row has its result (or `timeout_s` passes: TimeoutError)."""
        deadline_s = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            upload = self.get_upload(batch_id)
            if progress is not None:
                progress(upload)
            if upload.done:
                return upload
            if deadline_s is not None and time.monotonic() > deadline_s:
                raise TimeoutError(f"upload {batch_id} not applied after {timeout_s} s")
            time.sleep(WAIT_POLL_S)

    # Downloads

    def results(self, batch_id: str) -> DownloadReader:
        """The results of the upload's rows applied so far, in row order, as a stream of record batches."""
        return self._get(bulk_pb2.GetUploadResults(batch_id=batch_id))

    def export_entries(
        self,
        account_ids: Sequence[str],
        *,
        start_time: datetime.datetime | None = None,
        end_time: datetime.datetime | None = None,
    ) -> DownloadReader:
        """The journal entries of the accounts (`schemas.ENTRIES`) at or after `start_time` and before
        `end_time` (UTC when naive), account by account, as a stream of record batches."""
        command = bulk_pb2.ExportEntries(
            account_ids=list(account_ids), start_time=_timestamp(start_time), end_time=_timestamp(end_time)
        )
        return self._get(command)

    def export_confirmations(
        self, fund_code: str, trade_date: str, distributor_id: str = ""
    ) -> DownloadReader:
        """The confirmations of a closed trade date of a fund (`schemas.CONFIRMATIONS`): the caller's, or
        for the fund's manager every distributor's (or `distributor_id`'s), as a stream of record
        batches."""
        command = fundta_pb2.ExportConfirmations(
            fund_code=fund_code, trade_date=trade_date, distributor_id=distributor_id
        )
        return self._get(command)

    def score_dataset(self, collaboration_id: str, model_id: str, dataset_id: str) -> DownloadReader:
        """A co-creation model's scores over the rows of one of the caller's datasets (`schemas.SCORES`:
        each row's position, token and probability in millionths), as a stream of record batches."""
        command = cocreation_pb2.ScoreDatasetRows(
            collaboration_id=collaboration_id, model_id=model_id, dataset_id=dataset_id
        )
        return self._get(command)

    def download(self, ticket: bytes) -> DownloadReader:
        """The record batches of a ticket the service handed out (a co-creation query's kept result:
        `QueryResult.download.ticket`)."""
        try:
            return DownloadReader(self._client.do_get(flight.Ticket(ticket), options=self._options))
        except (flight.FlightError, pa.ArrowException) as error:
            raise error_from_flight(error) from error

    def list_results(self) -> list[flight.FlightInfo]:
        """The downloadable results of the caller's uploads."""
        try:
            return list(self._client.list_flights(options=self._options))
        except (flight.FlightError, pa.ArrowException) as error:
            raise error_from_flight(error) from error

    def _get(self, command: Message) -> DownloadReader:
        return self.download(pack(command))


class DownloadReader:
    """A download's stream whose failures are the typed exceptions of `jubao.errors`."""

    def __init__(self, reader: flight.FlightStreamReader) -> None:
        self._reader = reader

    @property
    def schema(self) -> pa.Schema:
        return self._guard(lambda: self._reader.schema)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for _ in range(2**62):
            try:
                chunk = self._reader.read_chunk()
            except StopIteration:
                return
            except (flight.FlightError, pa.ArrowException) as error:
                raise error_from_flight(error) from error
            yield chunk.data

    def read_all(self) -> pa.Table:
        return pa.Table.from_batches(list(self), schema=self.schema)

    @staticmethod
    def _guard(step: Callable[[], pa.Schema]) -> pa.Schema:
        try:
            return step()
        except (flight.FlightError, pa.ArrowException) as error:
            raise error_from_flight(error) from error


def _ack(acks: flight.FlightMetadataReader) -> bulk_pb2.UploadProgress:
    buffer = acks.read()
    answer = bulk_pb2.UploadProgress()
    if buffer is not None:
        answer.ParseFromString(buffer.to_pybytes())
    return answer
