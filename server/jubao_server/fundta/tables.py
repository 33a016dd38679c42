"""Tables of the fund transfer agency (see ARCHITECTURE.md, "Fund transfer agency").

* `fundta_fund_codes` (the `~platform` scope, one partition per fund code): which manager owns a code,
  so codes are unique across the service and any caller finds a fund's manager.
* `fundta_funds` (the manager's scope, one partition per fund): the fund (kind "fund"), its grants
  (kind "grant", by distributor) and its prices (kind "price", by date); records are JSON, `version`
  guards changes.
* `fundta_tenant_funds` (each tenant's scope, one partition): the funds a tenant manages or was granted,
  by code (ListFunds).
* `fundta_investors` (the distributor's scope, one partition per trading account): the investor.
* `fundta_holders` (the manager's scope, one partition per (fund, holder shard)): the positions (kind
  "positions": `fundta_position_chunks` chunks of Arrow columns with their `checksum`, written by
  day-closes, `segments.py`; kind "position", one JSON row per holder, before the shard's first day-close
  of that layout), the reservations of
  redemptions (kind "reservation": written by orders and cancellations) and the orders (kind
  "order:<trade date>", by order id) of the fund accounts hashed into the shard. An order and the
  reservation of its shares are one conditional batch, conditioned on the static `sealed_date` (the last
  trade date a day-close sealed: no order joins it after); `closed_date` is the last trade date whose
  day-close committed the shard.
* `fundta_requests` (the caller's scope, one partition per request id): claims with the first answer.
"""

from __future__ import annotations

from jubao_server.platform.idempotency import ClaimTable
from jubao_server.storage.contract import ColumnType, Table

T = ColumnType

FUND_CODES = Table(
    name="fundta_fund_codes",
    partition_key=("fund_code",),
    columns={"fund_code": T.TEXT, "manager_id": T.TEXT, "create_time_ms": T.BIGINT},
)

FUNDS = Table(
    name="fundta_funds",
    partition_key=("fund_code",),
    clustering_key=("row_kind", "row_key"),
    columns={
        "fund_code": T.TEXT,
        "row_kind": T.TEXT,
        "row_key": T.TEXT,
        "record": T.BLOB,
        "version": T.BIGINT,
    },
)

TENANT_FUNDS = Table(
    name="fundta_tenant_funds",
    partition_key=(),
    clustering_key=("fund_code",),
    columns={"fund_code": T.TEXT, "manager_id": T.TEXT, "create_time_ms": T.BIGINT},
)

INVESTORS = Table(
    name="fundta_investors",
    partition_key=("trading_account_id",),
    columns={"trading_account_id": T.TEXT, "record": T.BLOB},
)

HOLDERS = Table(
    name="fundta_holders",
    partition_key=("fund_code", "shard"),
    clustering_key=("row_kind", "row_key"),
    columns={
        "fund_code": T.TEXT,
        "shard": T.BIGINT,
        "row_kind": T.TEXT,
        "row_key": T.TEXT,
        "record": T.BLOB,
        "version": T.BIGINT,
        "checksum": T.BIGINT,
        "sealed_date": T.TEXT,
        "closed_date": T.TEXT,
    },
    static_columns=frozenset({"sealed_date", "closed_date"}),
)

REQUESTS = Table(
    name="fundta_requests",
    partition_key=("request_id",),
    columns={
        "request_id": T.TEXT,
        "operation": T.TEXT,
        "body_sha256": T.TEXT,
        "response": T.BLOB,
        "create_time_ms": T.BIGINT,
        "attempt": T.BIGINT,
    },
)

CLAIMS = ClaimTable(REQUESTS, operation_column="operation", answer_column="response")

ALL = (FUND_CODES, FUNDS, TENANT_FUNDS, INVESTORS, HOLDERS, REQUESTS)
