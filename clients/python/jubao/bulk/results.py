"""A co-creation query's result too large for its RunQuery response, downloaded over Arrow Flight with the
ticket the response carries (`QueryResult.download`).

`python -m jubao.bulk.results` is the process `jubao.client`'s `run_query` starts to download one (Arrow
Flight and grpcio must not share a process, apache/arrow#13300): the ticket on stdin, where and how to
connect in the JUBAO_* variables (`ClientConfig.from_env`); it writes the result as an Arrow IPC stream to
stdout and exits 0, or writes the error's `google.rpc.Status` and exits `EXIT_REFUSED`."""

from __future__ import annotations

import sys
from typing import Final

import pyarrow as pa
from google.rpc import error_details_pb2, status_pb2

from jubao.bulk.client import BulkClient
from jubao.client.config import ClientConfig
from jubao.errors import JubaoError

EXIT_REFUSED: Final = 3


def download_result(client: BulkClient, ticket: bytes) -> pa.Table:
    """The groups of a kept query result."""
    return client.download(ticket).read_all()


def status_of(error: JubaoError) -> status_pb2.Status:
    """The `google.rpc.Status` of an error, with its reason (`error_from_status` reads it back)."""
    status = status_pb2.Status(code=error.code.value, message=error.message)
    if error.reason:
        info = error_details_pb2.ErrorInfo(reason=error.reason, domain=error.domain, metadata=error.metadata)
        status.details.add().Pack(info)
    return status


def main() -> None:
    ticket = sys.stdin.buffer.read()
    try:
        with BulkClient.of(ClientConfig.from_env()) as client:
            table = download_result(client, ticket)
    except JubaoError as error:
        sys.stdout.buffer.write(status_of(error).SerializeToString())
        sys.stdout.buffer.flush()
        sys.exit(EXIT_REFUSED)
    with pa.ipc.new_stream(sys.stdout.buffer, table.schema) as writer:
        writer.write_table(table)


if __name__ == "__main__":
    main()
