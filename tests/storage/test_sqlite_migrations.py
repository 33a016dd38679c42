"""SQLite migrations: applied once each, checked by checksum, all-or-nothing per file, safe in parallel."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.storage.config import SqliteSettings
from jubao_server.storage.contract import MigrationError, MigrationSet
from jubao_server.storage.sqlite import SqliteBackend

_FIRST = (
    "CREATE TABLE a (scope TEXT NOT NULL, x TEXT DEFAULT 'semi;colon', PRIMARY KEY (scope)) WITHOUT ROWID;\n"
)
_SECOND = "-- two statements on one line\nCREATE TABLE b (y TEXT);  CREATE INDEX b_y ON b (y);\n"


@pytest.fixture
def settings(tmp_path: Path) -> SqliteSettings:
    return SqliteSettings(path=tmp_path / "db" / "migrations.db")


@pytest.fixture
async def backend(settings: SqliteSettings) -> AsyncIterator[SqliteBackend]:
    opened = await SqliteBackend.open(settings, SYSTEM_CLOCK)
    yield opened
    await opened.close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "schema"
    folder.mkdir()
    (folder / "0001_first.sql").write_text(_FIRST)
    (folder / "0002_second.sql").write_text(_SECOND)
    return folder


def _tables(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


async def test_files_apply_once_in_order(backend: SqliteBackend, folder: Path) -> None:
    sets = [MigrationSet("app", folder)]
    assert await backend.migrate(sets) == ["app/0001_first.sql", "app/0002_second.sql"]
    assert await backend.migrate(sets) == []
    (folder / "0003_third.sql").write_text("CREATE TABLE c (z TEXT);\n")
    assert await backend.migrate(sets) == ["app/0003_third.sql"]
    assert {"a", "b", "c", "schema_migrations"} <= _tables(backend.path)


async def test_a_changed_applied_file_is_refused(backend: SqliteBackend, folder: Path) -> None:
    await backend.migrate([MigrationSet("app", folder)])
    (folder / "0001_first.sql").write_text(_FIRST + "-- edited\n")
    with pytest.raises(MigrationError, match=r"0001_first\.sql"):
        await backend.migrate([MigrationSet("app", folder)])


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("0003_Bad-Name.sql", "CREATE TABLE c (z TEXT);\n"),
        ("3_short.sql", "CREATE TABLE c (z TEXT);\n"),
        ("0003_notes.txt", "notes\n"),
        ("0002_again.sql", "CREATE TABLE c (z TEXT);\n"),
    ],
)
async def test_malformed_folders_are_refused(
    backend: SqliteBackend, folder: Path, name: str, text: str
) -> None:
    (folder / name).write_text(text)
    with pytest.raises(MigrationError):
        await backend.migrate([MigrationSet("app", folder)])
    assert _tables(backend.path) <= {"schema_migrations"}


@pytest.mark.parametrize(
    "text", ["CREATE TABLE c (z TEXT);\nCREATE TABLE d (", "CREATE TABLE c (z TEXT);\nNONSENSE;\n"]
)
async def test_a_failing_file_applies_nothing(backend: SqliteBackend, folder: Path, text: str) -> None:
    (folder / "0003_broken.sql").write_text(text)
    with pytest.raises(MigrationError, match=r"0003_broken\.sql"):
        await backend.migrate([MigrationSet("app", folder)])
    assert "c" not in _tables(backend.path)
    (folder / "0003_broken.sql").write_text("CREATE TABLE c (z TEXT);\n")
    assert await backend.migrate([MigrationSet("app", folder)]) == ["app/0003_broken.sql"]


async def test_concurrent_migrations_apply_each_file_once(settings: SqliteSettings, folder: Path) -> None:
    backends = [await SqliteBackend.open(settings, SYSTEM_CLOCK) for _ in range(3)]
    try:
        results = await asyncio.gather(*(b.migrate([MigrationSet("app", folder)]) for b in backends))
    finally:
        for opened in backends:
            await opened.close()
    applied = sorted(name for names in results for name in names)
    assert applied == ["app/0001_first.sql", "app/0002_second.sql"]
