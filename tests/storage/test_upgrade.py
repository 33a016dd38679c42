"""A store made by the single-set layout (every schema file in one set, "jubao", as before products had
sets of their own) opens with the per-product sets: no file runs again, no checksum error, no table lost,
and the data written before reads back and takes new writes.

`before_products/<backend>/` holds copies of the files of that layout, byte for byte. On Cassandra each
test takes a keyspace of its own and drops it (the other tests share `jubao_test`)."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

import msgspec
import pytest
from jubao.errors import Reason
from jubao_server.app import migration_sets
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.cocreation.product import PRODUCT as COCREATION
from jubao_server.errors import ApiError
from jubao_server.fundta.product import PRODUCT as FUND_TA
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.journal import materialize
from jubao_server.payments.ledger import EARLIER_CLAIMS, Ledger
from jubao_server.payments.model import TransferState
from jubao_server.payments.product import PRODUCT as PAYMENTS
from jubao_server.payments.records import Record
from jubao_server.payments.tables import TRANSFERS
from jubao_server.platform.data_migrations import apply_data_migrations
from jubao_server.platform.idempotency import RequestClaims
from jubao_server.platform.paging import load_page_secret
from jubao_server.shards.stage import ShardId
from jubao_server.storage.cassandra.backend import CassandraBackend
from jubao_server.storage.contract import (
    NO_FAULTS,
    BulkPut,
    Following,
    MigrationError,
    MigrationSet,
    StorageBackend,
)
from jubao_server.storage.contract.migrations import SHARED_SET_BEFORE_PRODUCTS
from jubao_server.storage.memory import MemoryBackend
from jubao_server.tenancy.model import Product, Quota, Tenant, TenantKind
from jubao_server.tenancy.store import TenantStore

from tests import cassandra_node
from tests.backends import BACKENDS, open_test_backend
from tests.ledger.support import balance, ids_in_distinct_shards, open_account, pay

BEFORE_PRODUCTS: Final = Path(__file__).resolve().parent / "before_products"
SHARDS: Final = 4
TENANT: Final = "upgraded-bank"
SUFFIXES: Final = {"sqlite": ".sql", "cassandra": ".cql", "memory": ".tables"}

Open = Callable[[], Awaitable[StorageBackend]]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Open]:
    """Opens the same store again and again: a SQLite file, a Cassandra keyspace of the test's own (dropped
    at the end), or one memory backend (not durable: it stays open between the layouts)."""
    keyspace = f"jubao_upgrade_{uuid.uuid4().hex[:16]}"
    opened: list[StorageBackend] = []

    async def open_store() -> StorageBackend:
        if request.param == "memory" and opened:
            return opened[0]
        backend = await open_test_backend(request.param, tmp_path, NO_FAULTS, keyspace)
        opened.append(backend)
        return backend

    try:
        yield open_store
    finally:
        last = opened[-1] if opened else None
        if isinstance(last, CassandraBackend):
            await cassandra_node.drop_keyspace(last)
        for backend in opened:
            await backend.close()


async def reopen(backend: StorageBackend, open_store: Open) -> StorageBackend:
    """Close the store and open it again, as a server of the new version would (memory: the same one)."""
    if not isinstance(backend, MemoryBackend):
        await backend.close()
    return await open_store()


def claiming_as_before(ledger: Ledger, backend: StorageBackend) -> Ledger:
    """The ledger claiming its request ids as versions before `payments_claims` did: in
    `payments_requests`, one partition per id."""
    ledger._claims = RequestClaims(backend, EARLIER_CLAIMS, SYSTEM_CLOCK, PaymentsSettings().request_ttl_s)
    return ledger


@contextlib.contextmanager
def journaling_as_before(ledger: Ledger, backend: StorageBackend) -> Iterator[Ledger]:
    """The ledger keeping its journal as versions before `payments_transfers.owed_entry` did (while in
    the block): a transfer's row has no columns naming an outbox entry (the memory backend has no columns
    to lack, and one shape per table), and is written completed when the entry settles."""
    owing = ("owed_shard", "owed_entry")
    earlier = dataclasses.replace(
        TRANSFERS, columns={c: t for c, t in TRANSFERS.columns.items() if c not in owing}
    )

    def as_before(write: Following) -> Following:
        if not isinstance(write, BulkPut) or write.table is not TRANSFERS or backend.name == "memory":
            return write
        kept = [i for i, c in enumerate(write.columns) if c not in owing]
        rows = tuple(
            (key, clustering, tuple(values[i] for i in kept)) for key, clustering, values in write.rows
        )
        return BulkPut(earlier, write.scope, tuple(write.columns[i] for i in kept), rows)

    def journal(shard: ShardId, records: Sequence[tuple[int, Record]]) -> list[Following]:
        plain = [(seq, msgspec.structs.replace(r, owed_entry="")) for seq, r in records]
        return [as_before(batch) for batch in materialize(shard, plain)]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ledger.shards.machine, "journal", journal)
        yield ledger


def single_set(backend_name: str, tmp_path: Path, versions_max: int = 9999) -> MigrationSet:
    """The single-set layout's files of the backend, up to `versions_max`."""
    folder = tmp_path / "single_set"
    folder.mkdir()
    for path in (BEFORE_PRODUCTS / backend_name).iterdir():
        if int(path.name[:4]) <= versions_max:
            shutil.copyfile(path, folder / path.name)
    return MigrationSet(SHARED_SET_BEFORE_PRODUCTS, folder)


# Platform and payments schema files written after the single-set layout: an upgraded store gets them too
# (those its backend has: memory has no files that only add columns), and the sets of the products added
# since (`newer_than_single_set`).
NEWER_THAN_SINGLE_SET = (
    "platform/0006_bulk",
    "platform/0007_data_migrations",
    "platform/0008_request_attempts",
    "payments/0005_payments_claims",
    "payments/0006_payments_claim_attempts",
    "payments/0007_payments_transfer_owed",
)


def labels(backend_name: str, *names: str) -> list[str]:
    return [f"{name}{SUFFIXES[backend_name]}" for name in names]


def newer_than_single_set(backend_name: str, *before: str) -> list[str]:
    """The files an upgraded store gets: `before`, the platform's written since, and those of the products
    added since, in the composition root's order."""
    folders = {s.name: s.directory for s in migration_sets(backend_name)}
    suffix = SUFFIXES[backend_name]
    written = [name for name in NEWER_THAN_SINGLE_SET if file_of(folders, name, suffix).exists()]
    added = [
        f"{product.name}/{path.stem}"
        for product in (FUND_TA, COCREATION)
        for path in sorted(product.migration_set(backend_name).directory.iterdir())
    ]
    return labels(backend_name, *before, *written, *added)


def file_of(folders: dict[str, Path], name: str, suffix: str) -> Path:
    """The file of `name` ("set/NNNN_description") in its set's folder."""
    set_name, stem = name.split("/")
    return folders[set_name] / f"{stem}{suffix}"


async def test_a_store_of_the_single_set_opens_with_the_product_sets(store: Open, tmp_path: Path) -> None:
    backend = await store()
    before = single_set(backend.name, tmp_path)
    applied = await backend.migrate([before])
    assert len(applied) == len(list((BEFORE_PRODUCTS / backend.name).iterdir())) >= 3
    quota = Quota(requests_per_s=10, burst_requests=10, concurrent_calls_max=2)
    tenant = Tenant(TENANT, "Upgraded", TenantKind.BANK, frozenset({Product.PAYMENTS}), quota)
    assert await TenantStore(backend, SYSTEM_CLOCK).create_tenant(tenant) is not None
    secret = await load_page_secret(backend, SYSTEM_CLOCK)
    settlement, alice, bob = ids_in_distinct_shards("acct", SHARDS, 3)
    earlier = claiming_as_before(Ledger(backend, PaymentsSettings(shard_count=SHARDS)), backend)
    with journaling_as_before(earlier, backend) as ledger:
        await open_account(ledger, TENANT, settlement, allow_negative=True)
        for account in (alice, bob):
            await open_account(ledger, TENANT, account)
        paid = await pay(ledger, TENANT, settlement, (alice, 1_000), request_id="paid")
        with pytest.raises(ApiError) as refused:
            await pay(ledger, TENANT, alice, (bob, 5_000), request_id="overdraft")
        assert refused.value.reason == Reason.INSUFFICIENT_FUNDS
        await ledger.stop()

    backend = await reopen(backend, store)
    assert await backend.migrate(migration_sets(backend.name)) == newer_than_single_set(backend.name)
    assert await backend.migrate(migration_sets(backend.name)) == []
    assert await backend.migrate([before]) == [], "a server of the single-set layout finds its files applied"
    payments = [(PAYMENTS.name, PAYMENTS.data_migrations)]
    assert await apply_data_migrations(backend, payments) == ["payments/0001_payments_claim_buckets"]

    stored = await TenantStore(backend, SYSTEM_CLOCK).get_tenant(TENANT)
    assert stored is not None and stored.display_name == "Upgraded"
    assert await load_page_secret(backend, SYSTEM_CLOCK) == secret
    ledger = Ledger(backend, PaymentsSettings(shard_count=SHARDS))
    assert (await ledger.get_transfer(TENANT, paid.transfer_id)).state is TransferState.COMPLETED
    with pytest.raises(ApiError) as again:
        await pay(ledger, TENANT, alice, (bob, 5_000), request_id="overdraft")
    assert again.value.reason == Reason.INSUFFICIENT_FUNDS, "the refusal kept before is read back"
    assert await pay(ledger, TENANT, settlement, (alice, 1_000), request_id="paid") == paid, "not paid twice"
    with pytest.raises(ApiError) as reused:
        await pay(ledger, TENANT, settlement, (bob, 1), request_id="paid")
    assert reused.value.reason == Reason.REQUEST_ID_REUSED, "the claim kept before is found"
    await pay(ledger, TENANT, alice, (bob, 400))
    assert [await balance(ledger, TENANT, a) for a in (settlement, alice, bob)] == [-1_000, 600, 400]
    await ledger.stop()


async def test_files_the_single_set_lacked_are_applied(store: Open, tmp_path: Path) -> None:
    """A store made before platform_secrets (0005) existed gets that file, and only that one (with the
    files newer than the single set)."""
    backend = await store()
    await backend.migrate([single_set(backend.name, tmp_path, versions_max=4)])
    backend = await reopen(backend, store)
    applied = await backend.migrate(migration_sets(backend.name))
    assert applied == newer_than_single_set(backend.name, "platform/0005_platform_secrets")
    assert len(await load_page_secret(backend, SYSTEM_CLOCK)) >= 32


async def test_a_file_changed_since_the_single_set_applied_it_is_refused(store: Open, tmp_path: Path) -> None:
    backend = await store()
    await backend.migrate([single_set(backend.name, tmp_path)])
    platform, payments = migration_sets(backend.name)[:2]
    edited = tmp_path / "payments"
    shutil.copytree(payments.directory, edited)
    first = sorted(edited.iterdir())[0]
    first.write_text(first.read_text() + "-- edited after it was applied\n")
    changed = MigrationSet(payments.name, edited, formerly=payments.formerly)
    with pytest.raises(MigrationError, match=rf"payments/{first.name}: changed after it was applied"):
        await backend.migrate([platform, changed])
