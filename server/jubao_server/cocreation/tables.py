"""Tables of the co-creation product (see ARCHITECTURE.md, "Data co-creation").

* `cocreation_collaborations`: one partition per collaboration, in the shared scope `~cocreation` (a
  collaboration belongs to all its members, so to no tenant's scope): a `collaboration` row, a `member`
  row per tenant and a `dataset` row per dataset, each a typed record (`records.py`), and the static
  `version`. Every change reads the partition, changes it in pure code (`model.py`) and writes the rows it
  changed in one batch conditioned on `version`, so two changes of one collaboration never both apply.
* `cocreation_memberships`: the collaborations a tenant was invited to (tenant scope, one partition), for
  listing; the collaboration's own rows decide what the tenant sees.
* `cocreation_rows`: a dataset's rows, in its owner's scope (one partition per dataset): `chunk` rows
  (seq = chunk number) of Arrow IPC with a SHA-256, and the static counters `rows_received`,
  `chunk_count` and `withdrawn`. A chunk is stored only where `rows_received` says the rows end and while
  the dataset is not withdrawn (one conditional batch), so a resumed upload never stores a row twice and
  nothing lands after a withdrawal.
* `cocreation_requests`: request claims (AIP-155) with the first answer, per tenant.
* `cocreation_audit`: the audit log, one partition per collaboration in the shared scope: an entry per
  query that read rows (`model.AuditEntry`), by time and id, written before the query is answered, never
  changed and never expired.
* `cocreation_budgets`: a querying member's privacy budget in a collaboration with differential privacy
  (the shared scope, one partition per collaboration and member): the static `spent_epsilon_micro` and a
  row per query that spent (`model.Spend`, by request id, with the noised answer). A spend is one batch
  conditioned on `spent_epsilon_micro` being what the budget check read and on the request's row being
  absent, so two queries never spend the same epsilon and one request never spends twice.
* `cocreation_models`: the models trained in a collaboration, one partition per collaboration in the
  shared scope: a row per model (`model.Model`: its spec, state and progress, and once trained its
  coefficients and fit), written when the training starts and as it advances, by the one task that runs it.
* `cocreation_results`: a query result too large for its response, in its analyst's scope (one partition per
  result, its id random): `chunk` rows (seq from 0) of Arrow IPC with a SHA-256, then the `head` row (seq
  -1: the groups and chunks it holds), written last, so a result without it is incomplete and never read;
  the head expires after `cocreation_result_ttl_s`, the chunks an hour later (whole while readable).
* `cocreation_expiries`: every collaboration by its expiry (the shared scope, one partition), written
  before the collaboration itself: the sweep (`rooms.Cocreation.sweep`) finds the expired ones there,
  withdraws their datasets, deletes their rows and then the entry.
"""

from __future__ import annotations

from typing import Final

from jubao_server.platform.idempotency import ClaimTable
from jubao_server.storage.contract import ColumnType, Table

T = ColumnType

SHARED_SCOPE: Final = "~cocreation"
COLLABORATION_ROW: Final = "collaboration"
MEMBER_ROW: Final = "member"
DATASET_ROW: Final = "dataset"

COLLABORATIONS: Final = Table(
    name="cocreation_collaborations",
    partition_key=("collaboration_id",),
    clustering_key=("row_kind", "row_key"),
    columns={
        "collaboration_id": T.TEXT,
        "row_kind": T.TEXT,
        "row_key": T.TEXT,
        "record": T.BLOB,
        "version": T.BIGINT,
    },
    static_columns=frozenset({"version"}),
)

MEMBERSHIPS: Final = Table(
    name="cocreation_memberships",
    partition_key=(),
    clustering_key=("collaboration_id",),
    columns={"collaboration_id": T.TEXT, "create_time_ms": T.BIGINT},
)

ROWS: Final = Table(
    name="cocreation_rows",
    partition_key=("collaboration_id", "dataset_id"),
    clustering_key=("seq",),
    columns={
        "collaboration_id": T.TEXT,
        "dataset_id": T.TEXT,
        "seq": T.BIGINT,
        "first_row": T.BIGINT,
        "row_count": T.BIGINT,
        "data": T.BLOB,
        "sha256": T.BLOB,
        "rows_received": T.BIGINT,
        "chunk_count": T.BIGINT,
        "withdrawn": T.BOOLEAN,
    },
    static_columns=frozenset({"rows_received", "chunk_count", "withdrawn"}),
)

REQUESTS: Final = Table(
    name="cocreation_requests",
    partition_key=("request_id",),
    columns={
        "request_id": T.TEXT,
        "operation": T.TEXT,
        "body_sha256": T.TEXT,
        "answer": T.BLOB,
        "create_time_ms": T.BIGINT,
        "attempt": T.BIGINT,
    },
)

EXPIRIES: Final = Table(
    name="cocreation_expiries",
    partition_key=(),
    clustering_key=("expire_time_ms", "collaboration_id"),
    columns={"expire_time_ms": T.BIGINT, "collaboration_id": T.TEXT, "create_time_ms": T.BIGINT},
)

AUDIT: Final = Table(
    name="cocreation_audit",
    partition_key=("collaboration_id",),
    clustering_key=("time_ms", "audit_id"),
    columns={"collaboration_id": T.TEXT, "time_ms": T.BIGINT, "audit_id": T.TEXT, "record": T.BLOB},
)

BUDGETS: Final = Table(
    name="cocreation_budgets",
    partition_key=("collaboration_id", "tenant_id"),
    clustering_key=("request_id",),
    columns={
        "collaboration_id": T.TEXT,
        "tenant_id": T.TEXT,
        "request_id": T.TEXT,
        "record": T.BLOB,
        "spent_epsilon_micro": T.BIGINT,
    },
    static_columns=frozenset({"spent_epsilon_micro"}),
)

RESULTS: Final = Table(
    name="cocreation_results",
    partition_key=("collaboration_id", "result_id"),
    clustering_key=("seq",),
    columns={
        "collaboration_id": T.TEXT,
        "result_id": T.TEXT,
        "seq": T.BIGINT,
        "row_count": T.BIGINT,
        "chunk_count": T.BIGINT,
        "data": T.BLOB,
        "sha256": T.BLOB,
    },
)

MODELS: Final = Table(
    name="cocreation_models",
    partition_key=("collaboration_id",),
    clustering_key=("model_id",),
    columns={"collaboration_id": T.TEXT, "model_id": T.TEXT, "record": T.BLOB},
)

CLAIMS: Final = ClaimTable(REQUESTS, operation_column="operation", answer_column="answer")

ALL: Final = (COLLABORATIONS, MEMBERSHIPS, ROWS, REQUESTS, EXPIRIES, AUDIT, BUDGETS, MODELS, RESULTS)
