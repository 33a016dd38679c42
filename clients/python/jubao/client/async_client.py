"""The asyncio client: one `grpc.aio` channel, one typed stub per service."""

from __future__ import annotations

from types import TracebackType
from typing import Final, Self

import grpc

from jubao.admin.v1.tenant_admin_pb2_grpc import TenantAdminStub
from jubao.bulk.v1.bulk_pb2_grpc import BulkServiceStub
from jubao.client.channel import channel_credentials, channel_options
from jubao.client.cocreation import AsyncCocreationClient
from jubao.client.config import ClientConfig
from jubao.client.interceptors import AsyncInterceptor, AsyncStreamInterceptor, CallPolicy
from jubao.fundta.v1.fundta_pb2_grpc import FundServiceStub, TradingServiceStub
from jubao.meta.v1.meta_pb2_grpc import MetaServiceStub
from jubao.payments.v1.payments_pb2_grpc import PaymentServiceStub


class AsyncClient:
    """An asyncio jubao client. Without a config it reads `ClientConfig.from_env()`.

    Awaiting a stub method returns the response or raises the `JubaoError` subclass of the status code.
    """

    def __init__(self, config: ClientConfig | None = None) -> None:
        self.config: Final = config or ClientConfig.from_env()
        self._channel = _open_channel(self.config)
        self.admin: Final = TenantAdminStub(self._channel)
        self.bulk: Final = BulkServiceStub(self._channel)
        # CocreationService, and `run_query`: a query's groups as an Arrow table.
        self.cocreation: Final = AsyncCocreationClient(self._channel, self.config)
        self.meta: Final = MetaServiceStub(self._channel)
        self.payments: Final = PaymentServiceStub(self._channel)
        # The fund transfer agency: funds, grants and prices; investors, orders and holdings.
        self.funds: Final = FundServiceStub(self._channel)
        self.trading: Final = TradingServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()


def _open_channel(config: ClientConfig) -> grpc.aio.Channel:
    credentials = channel_credentials(config)
    options = channel_options(config)
    policy = CallPolicy.of(config)
    interceptors: list[grpc.aio.ClientInterceptor] = [
        AsyncInterceptor(policy),
        AsyncStreamInterceptor(policy),
    ]
    if credentials is None:
        return grpc.aio.insecure_channel(config.endpoint, options, interceptors=interceptors)
    return grpc.aio.secure_channel(config.endpoint, credentials, options, interceptors=interceptors)
