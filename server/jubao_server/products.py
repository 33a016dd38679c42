"""Products as plug-ins: what a product brings, declared in one object (`<its package>/product.py:
PRODUCT`, a `ProductSpec`), and what the host hands it.

The host (`platform/`, `storage/`, `tenancy/`, `config.py`) knows this protocol and no product; the
composition root (`app/`) lists the enabled products and assembles them. A product declares:

* `name`: its settings section (`[name]` in the TOML file, `JUBAO_<NAME>__<FIELD>` in the environment,
  the pydantic model `settings`) and its migration set;
* `entitlement`: the tenant product a caller's tenant must have enabled to call any of its services;
* `apis`: its gRPC services as the protos declare them (their full names key their policy, health and
  reflection, known before anything starts), and `services`, which builds their servicers from the
  running product and a `ServiceContext` (exactly those: the root checks);
* `tables` and `migrations`: the tables it stores (declared `Table`s) and the folder of the schema files
  that create them, one subfolder per backend (`sqlite/`, `cassandra/`, `memory/`); `data_migrations`:
  what rewrites rows earlier versions stored (`platform/data_migrations.py`), run after the schema;
* `start`: what it runs in this process, started with a `ProductContext` (the settings section, the
  storage backend, the clock, telemetry, this server's address); the running product's `stop` drains it;
* `datasets`: its bulk datasets for the Arrow Flight plane (`bulk/datasets.py`: uploads, whose rows the
  gRPC server applies with the running product, and exports).

Nothing here imports gRPC, and a product's `PRODUCT` must not either (its `services` imports its
servicers when the gRPC host calls it): the Arrow Flight process reads products too, and gRPC must not
be loaded there (apache/arrow#13300).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from google.protobuf.descriptor import ServiceDescriptor
from pydantic import BaseModel

from jubao_server.bulk.datasets import Dataset
from jubao_server.clock import Clock
from jubao_server.config import Settings
from jubao_server.invariants import ensure
from jubao_server.platform.data_migrations import DataMigration
from jubao_server.platform.paging import PageTokens
from jubao_server.storage.contract import MigrationSet, StorageBackend, Table
from jubao_server.telemetry import Telemetry
from jubao_server.tenancy.model import Product

if TYPE_CHECKING:
    import grpc

    from jubao_server.platform.forwarding import Forwarder

_NAME = re.compile(r"^[a-z][a-z0-9_]{1,31}$")

S = TypeVar("S", bound=BaseModel)


class Running(Protocol):
    """A started product: the tasks, caches and leases it holds in this process."""

    async def stop(self) -> None:
        """Drain: finish or hand over the work in flight, give up what this process holds, end its tasks.
        Called once, after the server stopped taking calls."""


R = TypeVar("R", bound=Running)


@dataclasses.dataclass(frozen=True)
class ProductContext(Generic[S]):
    """What the host hands a product it starts."""

    settings: S  # the product's own section
    backend: StorageBackend  # migrated: the platform's sets and every enabled product's
    clock: Clock  # the one clock of the process
    telemetry: Telemetry
    # Where the other servers of the cluster reach this one (calls for work this process holds are
    # forwarded there); "" in a process that takes no calls.
    address: str
    # The server processes of this machine, this one among them, that share the work out (`Node.members`);
    # empty when this process is the machine's only one.
    members: tuple[str, ...] = ()
    # The products started before this one in this process, by name (the fund TA settles through the
    # payments ledger).
    started: Mapping[str, Running] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ServiceContext:
    """What the gRPC host hands a product's service factory."""

    clock: Clock
    pages: PageTokens  # signs and checks the page tokens of list methods
    forwarder: Forwarder  # sends a call to the server that holds what it needs


@dataclasses.dataclass(frozen=True)
class GrpcService:
    """One gRPC service: its descriptor (its full name keys the service policy, health and reflection)
    and how its servicer joins a server (the generated `add_<Service>Servicer_to_server`, bound to it)."""

    descriptor: ServiceDescriptor
    add_to_server: Callable[[grpc.aio.Server], None]

    @property
    def name(self) -> str:
        return str(self.descriptor.full_name)


@dataclasses.dataclass(frozen=True)
class ProductSpec(Generic[S, R]):
    """Everything a product brings (see the module doc)."""

    name: str
    entitlement: Product
    settings: type[S]
    apis: tuple[ServiceDescriptor, ...]
    tables: tuple[Table, ...]
    migrations: Path
    start: Callable[[ProductContext[S]], Awaitable[R]]
    services: Callable[[R, ServiceContext], Sequence[GrpcService]]
    # The set its schema files were recorded under before they were its own (storage/contract/migrations.py).
    migrations_formerly: str | None = None
    datasets: tuple[Dataset, ...] = ()
    # Run once per storage after the schema files, in order (`platform/data_migrations.py`).
    data_migrations: tuple[DataMigration, ...] = ()

    def __post_init__(self) -> None:
        ensure(_NAME.match(self.name) is not None, f"product name {self.name!r}: [a-z][a-z0-9_]{{1,31}}")

    def migration_set(self, backend_name: str) -> MigrationSet:
        """Its schema files for the backend `backend_name`."""
        return MigrationSet(self.name, self.migrations / backend_name, formerly=self.migrations_formerly)

    def settings_of(self, settings: Settings) -> S:
        """Its section of the service's settings."""
        return settings.section(self.name, self.settings)


AnyProduct = ProductSpec[Any, Any]
