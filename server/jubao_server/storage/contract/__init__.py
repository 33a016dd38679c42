"""The storage contract: what every backend offers and every domain store may rely on.

It is modelled on what Apache Cassandra does well, so that nothing built on it depends on a feature
Cassandra lacks:

* A row is addressed by a partition key plus clustering columns. Every partition key starts with the
  implicit `scope` column: the tenant id for tenant data, `PLATFORM_SCOPE` for the platform's own data
  (the tenant registry). Tenant ids cannot start with `~`, so the scopes never meet.
* The only atomic multi-row write is a `Batch` on one partition of one table. It may carry conditions
  (compare-and-set, like a Cassandra lightweight transaction): either every condition holds and every
  write is applied, or nothing is written and the outcome shows the current values of the rows the
  conditions named.
* Rows derived from a commit (a journal) may go as a `BulkPut`: unconditional puts of one table in many
  partitions, checked once, not atomic; `StorageBackend.write_after` writes them after its batch.
* A backend that can (SQLite: one database) writes *guards* with a batch (`StorageBackend.write_after`,
  `guarded_writes`): conditional batches of other partitions in the same transaction, all or nothing.
  Code that uses them keeps a way that does without (Cassandra has none).
* Reads are point reads (`read_row`, `read_static`) and paged range reads inside one partition
  (`read_page`), ordered by the clustering columns. There are no joins, no cross-partition transactions
  and no secondary-index scans.
* A row written by a `Put` may carry a TTL in seconds; once it has passed, the row is invisible.
* Static columns (Cassandra `STATIC`) belong to the whole partition: a conditional batch may compare
  them and write clustered rows in the same atomic step (a balance and its journal rows, an owner epoch
  and the changes it fences).
* A conditional batch whose answer was lost is resolved inside the backend (`unknown.py`): callers never
  see "maybe".

This package is the contract's front door: domain code imports its names from here. The modules follow
its seams: `values` (cells and column types), `tables` (tables, partitions), `reads` (rows, range queries,
pages), `writes` (puts, deletes, conditions), `batch` (the batch and its outcome), `bulk` (the bulk put),
`checks` (the checks a batch or a bulk put passes when built), `errors`, `migrations` (migration sets and
their schema files), `backend` (the base class; reading a whole range page by page, writing many
batches), and, for backends, `conditions` (evaluating conditions), `unknown` (resolving lost answers)
and `faults` (the fault-injection hooks).
"""

from jubao_server.storage.contract.backend import (
    StorageBackend,
    read_all,
    read_pages,
    send_in_steps,
    write_all,
)
from jubao_server.storage.contract.batch import Batch, BatchOutcome
from jubao_server.storage.contract.bulk import BulkPut, BulkRow, Following
from jubao_server.storage.contract.errors import FollowingWriteError, MigrationError, StorageError
from jubao_server.storage.contract.faults import NO_FAULTS, Faults, LostAnswer
from jubao_server.storage.contract.migrations import MigrationSet
from jubao_server.storage.contract.reads import (
    Bound,
    BoundShape,
    ColumnPage,
    Consistency,
    Page,
    QueryShape,
    Row,
    RowQuery,
)
from jubao_server.storage.contract.tables import PartitionRef, Table
from jubao_server.storage.contract.values import (
    INT64_MAX,
    INT64_MIN,
    PLATFORM_SCOPE,
    SCOPE_COLUMN,
    ColumnType,
    Key,
    Value,
    value_bytes,
)
from jubao_server.storage.contract.writes import Condition, Delete, Put, RowAbsent, RowMatches, StaticMatches

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "NO_FAULTS",
    "PLATFORM_SCOPE",
    "SCOPE_COLUMN",
    "Batch",
    "BatchOutcome",
    "Bound",
    "BoundShape",
    "BulkPut",
    "BulkRow",
    "ColumnPage",
    "ColumnType",
    "Condition",
    "Consistency",
    "Delete",
    "Faults",
    "Following",
    "FollowingWriteError",
    "Key",
    "LostAnswer",
    "MigrationError",
    "MigrationSet",
    "Page",
    "PartitionRef",
    "Put",
    "QueryShape",
    "Row",
    "RowAbsent",
    "RowMatches",
    "RowQuery",
    "StaticMatches",
    "StorageBackend",
    "StorageError",
    "Table",
    "Value",
    "read_all",
    "read_pages",
    "send_in_steps",
    "value_bytes",
    "write_all",
]
