"""The composition root: the enabled products, and what every process of the service derives from the
list (its settings model, its schema), in one place that imports no gRPC, so that a process without gRPC
(the Arrow Flight server, apache/arrow#13300) shares it. Each process is assembled in a module of its
own here: `grpc_server.py` (`Jubao`) for the gRPC server, `flight_server.py` for the Arrow Flight server.

Adding a product: its package with a `product.py` declaring `PRODUCT` (see `products.py`), and one line in
`PRODUCTS` below.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from jubao_server import config
from jubao_server.bulk.datasets import Datasets
from jubao_server.cocreation.product import PRODUCT as COCREATION
from jubao_server.config import Settings
from jubao_server.fundta.product import PRODUCT as FUND_TA
from jubao_server.invariants import ensure
from jubao_server.payments.product import PRODUCT as PAYMENTS
from jubao_server.platform.data_migrations import apply_data_migrations
from jubao_server.products import AnyProduct
from jubao_server.storage.contract import MigrationSet, StorageBackend
from jubao_server.storage.factory import platform_migrations

# The enabled products, in start order.
PRODUCTS: Final[tuple[AnyProduct, ...]] = (PAYMENTS, FUND_TA, COCREATION)

# The settings of the service: the host's sections and one per product.
SETTINGS: Final = config.with_sections({product.name: product.settings for product in PRODUCTS})


def _check(products: Sequence[AnyProduct]) -> None:
    """Names (settings sections, migration sets), services, tables and datasets belong to one product
    each."""
    names = (
        [p.name for p in products],
        [api.full_name for p in products for api in p.apis],
        [t.name for p in products for t in p.tables],
        [d.name for p in products for d in p.datasets],
    )
    for kind, listed in zip(("product", "service", "table", "dataset"), names, strict=True):
        repeated = sorted(name for name, count in Counter(listed).items() if count > 1)
        ensure(not repeated, f"{kind} names declared twice: {repeated}")


_check(PRODUCTS)


def datasets() -> Datasets:
    """The enabled products' bulk datasets."""
    return Datasets.of(dataset for product in PRODUCTS for dataset in product.datasets)


def load_settings(config_path: Path | None = None) -> Settings:
    """The settings of the service (`config.load_settings` of `SETTINGS`)."""
    return config.load_settings(SETTINGS, config_path)


def migration_sets(backend_name: str) -> list[MigrationSet]:
    """The schema of the service on a backend: the platform's set, then each product's."""
    return [platform_migrations(backend_name), *(p.migration_set(backend_name) for p in PRODUCTS)]


async def migrate(backend: StorageBackend) -> list[str]:
    """Apply what is pending of the service's schema, then of its products' data migrations (`jubao-server
    migrate`); the files and data migrations applied."""
    applied = await backend.migrate(migration_sets(backend.name))
    data = [(p.name, p.data_migrations) for p in PRODUCTS]
    return applied + await apply_data_migrations(backend, data)
