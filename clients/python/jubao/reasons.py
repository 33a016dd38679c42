"""The error vocabulary shared by the server and every client, free of any transport: the canonical
status codes, the `ErrorInfo` domain, the reasons a call can fail for, and the shape of a bad field.

`jubao.errors` builds the client's typed exceptions on it; the server (its gRPC and its Arrow Flight
boundary alike) renders its errors with it.
"""

from __future__ import annotations

import dataclasses
from enum import IntEnum, StrEnum
from typing import Final

ERROR_DOMAIN: Final = "jubao.cloud"


class Code(IntEnum):
    """The canonical codes of `google.rpc.Code`, by name and number (gRPC's status codes are the same;
    Arrow Flight errors carry them in the `google.rpc.Status` of their `extra_info`)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class Reason(StrEnum):
    """Why a call failed: stable, UPPER_SNAKE, safe to branch on."""

    # UNAUTHENTICATED
    API_KEY_MISSING = "API_KEY_MISSING"
    API_KEY_INVALID = "API_KEY_INVALID"
    API_KEY_REVOKED = "API_KEY_REVOKED"
    CLIENT_CERTIFICATE_UNKNOWN = "CLIENT_CERTIFICATE_UNKNOWN"
    TENANT_DISABLED = "TENANT_DISABLED"
    # PERMISSION_DENIED
    PRODUCT_NOT_ENABLED = "PRODUCT_NOT_ENABLED"
    OPERATOR_ONLY = "OPERATOR_ONLY"
    # RESOURCE_EXHAUSTED
    RATE_LIMITED = "RATE_LIMITED"
    CONCURRENCY_LIMITED = "CONCURRENCY_LIMITED"
    API_KEY_LIMIT = "API_KEY_LIMIT"
    TENANT_LIMIT = "TENANT_LIMIT"
    # INVALID_ARGUMENT
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    # The page_token was not issued by this service for this same query (method, tenant and every
    # parameter but page_size), or was altered: start the listing again without a token.
    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"
    # The request body is not a valid protobuf message of the method's request type.
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    # NOT_FOUND
    TENANT_NOT_FOUND = "TENANT_NOT_FOUND"
    API_KEY_NOT_FOUND = "API_KEY_NOT_FOUND"
    # ALREADY_EXISTS
    TENANT_EXISTS = "TENANT_EXISTS"
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
    UNKNOWN_CURRENCY = "UNKNOWN_CURRENCY"
    # NOT_FOUND, ALREADY_EXISTS (payments)
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    TRANSFER_NOT_FOUND = "TRANSFER_NOT_FOUND"
    ACCOUNT_EXISTS = "ACCOUNT_EXISTS"
    # FAILED_PRECONDITION
    CONCURRENT_MODIFICATION = "CONCURRENT_MODIFICATION"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    ACCOUNT_FROZEN = "ACCOUNT_FROZEN"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    # A posting would take an account's ledger, held or available balance outside int64.
    BALANCE_OVERFLOW = "BALANCE_OVERFLOW"
    # DEADLINE_EXCEEDED, UNAVAILABLE, INTERNAL
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    DRAINING = "DRAINING"
    STORAGE_UNAVAILABLE = "STORAGE_UNAVAILABLE"
    INTERNAL = "INTERNAL"
    # NOT_FOUND (payments holds and escrows)
    HOLD_NOT_FOUND = "HOLD_NOT_FOUND"
    ESCROW_NOT_FOUND = "ESCROW_NOT_FOUND"
    # FAILED_PRECONDITION (payments holds, escrows and refunds)
    INVALID_STATE = "INVALID_STATE"
    REFUND_EXCEEDS_ORIGINAL = "REFUND_EXCEEDS_ORIGINAL"
    AMOUNT_EXCEEDS_HOLD = "AMOUNT_EXCEEDS_HOLD"
    REFUND_WINDOW_CLOSED = "REFUND_WINDOW_CLOSED"
    # UNAVAILABLE (payments): committed, but a credit to another shard is still on its way; retry
    DELIVERY_PENDING = "DELIVERY_PENDING"
    # UNAVAILABLE (payments): the ledger shard is held by another server that could not be reached; retry
    SHARD_MOVED = "SHARD_MOVED"
    # FAILED_PRECONDITION (payments events): the cursor is older than the events kept; start afresh
    CURSOR_EXPIRED = "CURSOR_EXPIRED"
    # NOT_FOUND (bulk): no upload of this batch_id for the caller's tenant
    UPLOAD_NOT_FOUND = "UPLOAD_NOT_FOUND"
    # FAILED_PRECONDITION (bulk): rows past the end of an upload already committed
    UPLOAD_COMMITTED = "UPLOAD_COMMITTED"
    # FAILED_PRECONDITION (bulk): a message starts past the rows received (resume from
    # UploadProgress.rows_received), or a commit counts other rows than were received
    UPLOAD_ROWS_MISSING = "UPLOAD_ROWS_MISSING"
    # ABORTED (bulk): another DoPut of the same batch_id stored rows meanwhile; resume
    UPLOAD_CONFLICT = "UPLOAD_CONFLICT"
    # INVALID_ARGUMENT (bulk): a message's Arrow schema does not match the dataset's (the column is named)
    SCHEMA_MISMATCH = "SCHEMA_MISMATCH"
    # DATA_LOSS (bulk): a stored chunk does not match its checksum
    CHECKSUM_MISMATCH = "CHECKSUM_MISMATCH"
    # NOT_FOUND (fund TA): no such fund, investor or order the caller may see
    FUND_NOT_FOUND = "FUND_NOT_FOUND"
    INVESTOR_NOT_FOUND = "INVESTOR_NOT_FOUND"
    ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
    # ALREADY_EXISTS (fund TA): the fund code or trading account id is taken; a price of that date was
    # published with other values
    FUND_EXISTS = "FUND_EXISTS"
    INVESTOR_EXISTS = "INVESTOR_EXISTS"
    PRICE_PUBLISHED = "PRICE_PUBLISHED"
    # PERMISSION_DENIED (fund TA): only the fund's manager (a fund house) may do this; the distributor was
    # not granted the fund
    NOT_FUND_MANAGER = "NOT_FUND_MANAGER"
    FUND_NOT_GRANTED = "FUND_NOT_GRANTED"
    # FAILED_PRECONDITION (fund TA): the fund's status does not take the order; an amount or holding
    # below the fund's minimum; more shares than available; the order's cut-off has passed
    FUND_SUSPENDED = "FUND_SUSPENDED"
    BELOW_MINIMUM = "BELOW_MINIMUM"
    INSUFFICIENT_SHARES = "INSUFFICIENT_SHARES"
    CUTOFF_PASSED = "CUTOFF_PASSED"
    # FAILED_PRECONDITION (fund TA): a fast redemption over what the fund's daily cap leaves the investor
    # at this distributor today, or in a fund without fast redemption
    FAST_REDEMPTION_LIMIT = "FAST_REDEMPTION_LIMIT"
    # FAILED_PRECONDITION (fund TA day-close): a day-close closes the trade dates in order, up to the
    # current one; the prices it needs are not all published
    CLOSE_ORDER = "CLOSE_ORDER"
    PRICE_MISSING = "PRICE_MISSING"
    # NOT_FOUND (fund TA): no day-close of that fund and date
    DAY_CLOSE_NOT_FOUND = "DAY_CLOSE_NOT_FOUND"
    # NOT_FOUND (fund TA): the distributor was never granted the fund
    GRANT_NOT_FOUND = "GRANT_NOT_FOUND"
    # NOT_FOUND (cocreation): no such collaboration, or the caller is neither a member nor invited
    COLLABORATION_NOT_FOUND = "COLLABORATION_NOT_FOUND"
    DATASET_NOT_FOUND = "DATASET_NOT_FOUND"
    # ALREADY_EXISTS (cocreation): the dataset id is taken in the collaboration
    DATASET_EXISTS = "DATASET_EXISTS"
    # PERMISSION_DENIED (cocreation): the member lacks the ability, does not own the dataset, or is not
    # the collaboration's creator
    ABILITY_MISSING = "ABILITY_MISSING"
    NOT_DATASET_OWNER = "NOT_DATASET_OWNER"
    CREATOR_ONLY = "CREATOR_ONLY"
    # FAILED_PRECONDITION (cocreation)
    COLLABORATION_EXPIRED = "COLLABORATION_EXPIRED"
    DATASET_NOT_READY = "DATASET_NOT_READY"
    DATASET_WITHDRAWN = "DATASET_WITHDRAWN"
    # INVALID_ARGUMENT (cocreation): a query breaks a dataset's analysis rule (dataset, column, rule named)
    ANALYSIS_RULE_VIOLATED = "ANALYSIS_RULE_VIOLATED"
    # RESOURCE_EXHAUSTED (cocreation): with differential privacy, the query costs more epsilon than the
    # caller's privacy budget has left
    PRIVACY_BUDGET_EXHAUSTED = "PRIVACY_BUDGET_EXHAUSTED"
    # NOT_FOUND (cocreation): no such model in the collaboration
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    # NOT_FOUND (cocreation): no kept query result of the caller's by that id (another tenant's, or expired)
    QUERY_RESULT_NOT_FOUND = "QUERY_RESULT_NOT_FOUND"
    # FAILED_PRECONDITION (cocreation): a model's join or a scoring holds fewer join keys than the threshold;
    # a model scored before it was trained
    TOO_FEW_ROWS = "TOO_FEW_ROWS"
    MODEL_NOT_TRAINED = "MODEL_NOT_TRAINED"
    # FAILED_PRECONDITION (cocreation): the fit of a model on the joined rows did not converge (a
    # coefficient or metric is not finite)
    MODEL_NOT_CONVERGED = "MODEL_NOT_CONVERGED"
    # FAILED_PRECONDITION (cocreation): a model's training was cut short (the servers running it stopped)
    # as many times as a model may start one
    TRAINING_INTERRUPTED = "TRAINING_INTERRUPTED"


@dataclasses.dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str
