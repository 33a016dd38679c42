"""Data co-creation on the member's side: join keys turned into keyed tokens before they leave the
member's machine, and a dataset's rows uploaded over Arrow Flight.

`tokenize` replaces each value of a join column (a phone number, an id number, an order id) with
HMAC-SHA256(secret, value) in lowercase hex. The members of a collaboration agree on the secret out of
band; jubao never receives it, nor the raw keys: equal keys give equal tokens, so datasets still join on
them, and without the secret a token cannot be reversed by trying the likely values (a plain hash of a
phone number can: there are only about 10^10 of them). What a token does not hide: that two rows of two
datasets share a key (that is the join), and every member holding the secret can token its own list of
candidates and look for them in what it is shown (see ARCHITECTURE.md, "Data co-creation").

Values are normalized before they are keyed (`normalize`: stripped, NFKC, lowercase), so that every
member turns " ABC " and "abc" into the same token; normalize differently and the datasets will not join.

This module never imports gRPC's Python package (apache/arrow#13300): register the dataset over gRPC in
another process (the CLI does) or before importing the Flight client.
"""

from __future__ import annotations

import pyarrow as pa
from pyarrow import flight

from jubao.bulk.client import BulkClient, Progress, UploadReceipt, error_from_flight, pack
from jubao.bulk.tokens import SECRET_BYTES_MIN, normalize, token, tokenize
from jubao.cocreation.v1 import cocreation_pb2

__all__ = ["SECRET_BYTES_MIN", "dataset_schema", "normalize", "token", "tokenize", "upload_dataset"]


def _descriptor(collaboration_id: str, dataset_id: str) -> flight.FlightDescriptor:
    command = cocreation_pb2.UploadDatasetRows(collaboration_id=collaboration_id, dataset_id=dataset_id)
    return flight.FlightDescriptor.for_command(pack(command))


def dataset_schema(client: BulkClient, collaboration_id: str, dataset_id: str) -> pa.Schema:
    """The Arrow schema of a registered dataset's rows (its columns in order)."""
    try:
        return client.flight_info(_descriptor(collaboration_id, dataset_id)).schema
    except (flight.FlightError, pa.ArrowException) as error:
        raise error_from_flight(error) from error


def upload_dataset(
    client: BulkClient,
    collaboration_id: str,
    dataset_id: str,
    table: pa.Table,
    *,
    progress: Progress | None = None,
) -> UploadReceipt:
    """Upload the rows of a registered dataset (its join key already tokenized), from where the stored
    rows end, and commit them: the dataset becomes ready. Run it again after any failure to continue."""
    descriptor = _descriptor(collaboration_id, dataset_id)
    try:
        info = client.flight_info(descriptor)
        rows = table.select(info.schema.names).cast(info.schema)
        start = max(0, info.total_records)
        return client.put(
            dataset_id, descriptor, info.schema, rows.to_batches(), start=start, progress=progress
        )
    except (flight.FlightError, pa.ArrowException) as error:
        raise error_from_flight(error) from error
