"""The synchronous client: one channel, one typed stub per service."""

from __future__ import annotations

from types import TracebackType
from typing import Final, Self

import grpc

from jubao.admin.v1.tenant_admin_pb2_grpc import TenantAdminStub
from jubao.bulk.v1.bulk_pb2_grpc import BulkServiceStub
from jubao.client.channel import channel_credentials, channel_options
from jubao.client.cocreation import CocreationClient
from jubao.client.config import ClientConfig
from jubao.client.interceptors import CallPolicy, SyncInterceptor, SyncStreamInterceptor
from jubao.fundta.v1.fundta_pb2_grpc import FundServiceStub, TradingServiceStub
from jubao.meta.v1.meta_pb2_grpc import MetaServiceStub
from jubao.payments.v1.payments_pb2_grpc import PaymentServiceStub


class Client:
    """A blocking jubao client. Without a config it reads `ClientConfig.from_env()`.

    Each stub method takes the request and optional `timeout` (seconds) and `metadata`; a failed call
    raises the `JubaoError` subclass of its status code.
    """

    def __init__(self, config: ClientConfig | None = None) -> None:
        self.config: Final = config or ClientConfig.from_env()
        self._channel = _open_channel(self.config)
        self.admin: Final = TenantAdminStub(self._channel)
        self.bulk: Final = BulkServiceStub(self._channel)
        # CocreationService, and `run_query`: a query's groups as an Arrow table.
        self.cocreation: Final = CocreationClient(self._channel, self.config)
        self.meta: Final = MetaServiceStub(self._channel)
        self.payments: Final = PaymentServiceStub(self._channel)
        # The fund transfer agency: funds, grants and prices; investors, orders and holdings.
        self.funds: Final = FundServiceStub(self._channel)
        self.trading: Final = TradingServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _open_channel(config: ClientConfig) -> grpc.Channel:
    credentials = channel_credentials(config)
    options = channel_options(config)
    channel = (
        grpc.insecure_channel(config.endpoint, options)
        if credentials is None
        else grpc.secure_channel(config.endpoint, credentials, options)
    )
    policy = CallPolicy.of(config)
    return grpc.intercept_channel(channel, SyncInterceptor(policy), SyncStreamInterceptor(policy))
