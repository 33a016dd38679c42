"""jubao.bulk.v1.BulkService: the caller's uploads and their progress over gRPC (the same answers as the
Flight action GetUpload). Uploads and downloads themselves go over Arrow Flight."""

from __future__ import annotations

from typing import Any

import grpc
from jubao.bulk.v1 import bulk_pb2 as pb
from jubao.bulk.v1 import bulk_pb2_grpc as pb_grpc
from jubao.reasons import Reason

from jubao_server.bulk.datasets import Datasets, check_batch_id
from jubao_server.bulk.store import BulkStore
from jubao_server.bulk.views import upload_to_pb
from jubao_server.errors import not_found
from jubao_server.platform.context import current_caller
from jubao_server.platform.paging import PageTokens, page_size
from jubao_server.tenancy.auth import require_product

Context = grpc.aio.ServicerContext[Any, Any]


class BulkService(pb_grpc.BulkServiceServicer):
    def __init__(self, store: BulkStore, datasets: Datasets, pages: PageTokens) -> None:
        self._store = store
        self._datasets = datasets
        self._pages = pages

    async def GetUpload(self, request: pb.GetUploadRequest, context: Context) -> pb.GetUploadResponse:
        caller = current_caller()
        batch_id = check_batch_id(request.batch_id)
        upload = await self._store.get(caller.tenant.tenant_id, batch_id)
        if upload is None:
            raise not_found(Reason.UPLOAD_NOT_FOUND, f"no upload {batch_id}", batch_id=batch_id)
        dataset = self._datasets.uploads.get(upload.dataset)
        if dataset is not None:
            require_product(caller, dataset.product)
        return pb.GetUploadResponse(upload=upload_to_pb(upload))

    async def ListUploads(self, request: pb.ListUploadsRequest, context: Context) -> pb.ListUploadsResponse:
        tenant_id = current_caller().tenant.tenant_id
        page = self._pages.query(tenant_id, request)
        uploads, last = await self._store.list_uploads(tenant_id, page.start(), page_size(request.page_size))
        return pb.ListUploadsResponse(
            uploads=[upload_to_pb(upload) for upload in uploads], next_page_token=page.next(last)
        )
