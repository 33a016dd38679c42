"""`client.cocreation`: the CocreationService stub, and `run_query`, which answers a query's groups as an
Arrow table whichever way they came: in the RunQuery response, or (a result too large for it) over Arrow
Flight with the ticket the response carries, downloaded by a child process (`python -m
jubao.bulk.results`): Arrow Flight and grpcio must not share a process (apache/arrow#13300)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import TYPE_CHECKING, Final, Self

import grpc
import pyarrow as pa
from google.rpc import status_pb2

from jubao.client.config import ClientConfig, child_environment
from jubao.cocreation.v1 import cocreation_pb2 as pb
from jubao.cocreation.v1.cocreation_pb2_grpc import CocreationServiceStub
from jubao.errors import error_from_status
from jubao.reasons import Code

if TYPE_CHECKING:
    from jubao.cocreation.v1.cocreation_pb2_grpc import CocreationServiceAsyncStub as _AsyncStub
else:
    _AsyncStub = CocreationServiceStub  # the generated module types its asyncio stub apart only

_EXIT_REFUSED: Final = 3  # jubao.bulk.results.EXIT_REFUSED (that module loads Arrow Flight)
_TYPES: Final = {"string_value": pa.string(), "int64_value": pa.int64(), "double_value": pa.float64()}


class CocreationClient(CocreationServiceStub):
    """The blocking client's CocreationService."""

    # The generated stub's type says in `__new__` which channel makes which stub; this one takes a config.
    def __new__(cls, channel: grpc.Channel, config: ClientConfig) -> Self:
        return object.__new__(cls)

    def __init__(self, channel: grpc.Channel, config: ClientConfig) -> None:
        super().__init__(channel)  # type: ignore[call-arg]  # (typed in the stub's `__new__`)
        self._config = config

    def run_query(self, request: pb.RunQueryRequest) -> pa.Table:
        """Run a query (RunQuery, within the config's deadline) and answer its groups: the result's
        columns, named as `QueryResult.columns`, one row per group."""
        response: pb.RunQueryResponse = self.RunQuery(request)
        return result_table(response.result, self._config)


class AsyncCocreationClient(_AsyncStub):
    """The asyncio client's CocreationService."""

    # The generated stub's type says in `__new__` which channel makes which stub; this one takes a config.
    def __new__(cls, channel: grpc.aio.Channel, config: ClientConfig) -> Self:
        return object.__new__(cls)

    def __init__(self, channel: grpc.aio.Channel, config: ClientConfig) -> None:
        super().__init__(channel)
        self._config = config

    async def run_query(self, request: pb.RunQueryRequest) -> pa.Table:
        """As `CocreationClient.run_query`; a download runs on a worker thread."""
        response: pb.RunQueryResponse = await self.RunQuery(request)
        return await asyncio.to_thread(result_table, response.result, self._config)


def result_table(result: pb.QueryResult, config: ClientConfig) -> pa.Table:
    """A query result's groups: from the response, or downloaded with its ticket."""
    if result.HasField("download"):
        return download(result.download.ticket, config)
    columns = []
    for index in range(len(result.columns)):
        cells = [row.cells[index] for row in result.rows]
        kinds = {found for cell in cells if (found := cell.WhichOneof("value")) is not None}
        kind: str = next(iter(kinds), "int64_value") if len(kinds) <= 1 else "double_value"
        values = [getattr(cell, kind) if cell.WhichOneof("value") else None for cell in cells]
        columns.append(pa.array(values, _TYPES[kind]))
    return pa.Table.from_arrays(columns, names=list(result.columns))


def download(ticket: bytes, config: ClientConfig) -> pa.Table:
    """The result a ticket names, downloaded over Arrow Flight by a child process with `config`'s bulk
    endpoint and credentials; its error raised as the typed exception."""
    done = subprocess.run(
        [sys.executable, "-m", "jubao.bulk.results"],
        input=ticket,
        capture_output=True,
        env=child_environment(config),
        check=False,
    )
    if done.returncode == _EXIT_REFUSED:
        status = status_pb2.Status.FromString(done.stdout)
        raise error_from_status(status.code, status, status.message)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace")[-2000:]
        raise error_from_status(Code.UNKNOWN, None, f"the download of a query result failed: {message}")
    return pa.ipc.open_stream(done.stdout).read_all()
