"""Bulk data over Arrow Flight: uploads (resumable, exactly once, applied by the service) and downloads
(results, exports) as Arrow record batches. See `jubao.bulk.client.BulkClient` and the dataset schemas in
`jubao.bulk.schemas`. Importing this package loads pyarrow, never gRPC (apache/arrow#13300)."""
