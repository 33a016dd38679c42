"""Migration sets and their versioned schema files, found and checked the same way by every backend.

Each backend records an applied file under (set name, version) with its file name, checksum and time.
A set may have been known under another name before (`MigrationSet.formerly`): until products became
packages, the platform's and the payments ledger's files were one set, "jubao" (SHARED_SET_BEFORE_PRODUCTS),
and they kept their versions and bytes when they moved into sets of their own. A file that its set has
not recorded, but whose former set recorded the same version under the same file name, was applied
then: it is recorded under its set as it was (same checksum, which must still match, and the time it was
applied), never run again (`carried_over`). The former records stay, so a server of the earlier layout
started against the same storage still finds its files applied.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
from pathlib import Path
from typing import Final

import structlog

from jubao_server import limits
from jubao_server.storage.contract.errors import MigrationError

# The one set of every schema file, before each product had its own (storage/<backend>/migrations held
# the platform's files 0001 and 0005 and the payments ledger's 0002-0004).
SHARED_SET_BEFORE_PRODUCTS: Final = "jubao"

_log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True)
class MigrationSet:
    """A named folder of versioned schema files `NNNN_description.<suffix>` (`.sql` on SQLite, `.cql` on
    Cassandra, `.tables` in memory), applied in order, each once. An applied file may not change: its
    checksum is recorded and checked. `formerly`: the set its files were recorded under before (see the
    module doc)."""

    name: str
    directory: Path
    formerly: str | None = None


@dataclasses.dataclass(frozen=True)
class SchemaFile:
    set_name: str
    version: int
    name: str
    text: str
    checksum: str  # sha256 of the file's bytes, hex
    formerly: str | None = None  # the former name of its set

    @property
    def label(self) -> str:
        return f"{self.set_name}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What a backend recorded when it applied a schema file."""

    name: str
    checksum: str
    applied_at_ms: int


def schema_files(migration_set: MigrationSet, suffix: str) -> list[SchemaFile]:
    """The set's files in version order. Every file in the folder must be a schema file named
    `NNNN_description<suffix>`, with a version of its own, within the bounds of `limits`."""
    directory = migration_set.directory
    if not directory.is_dir():
        raise MigrationError(f"{migration_set.name}: no folder {directory}")
    paths = list(itertools.islice(directory.iterdir(), limits.migration_files_max + 1))
    if len(paths) > limits.migration_files_max:
        raise MigrationError(f"{migration_set.name}: more than migration_files_max files")
    pattern = re.compile(rf"^(\d{{4}})_[a-z0-9_]+{re.escape(suffix)}$")
    files = sorted((_read(migration_set, path, pattern, suffix) for path in paths), key=lambda f: f.version)
    versions = [f.version for f in files]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{migration_set.name}: two files share a version number")
    return files


def _read(migration_set: MigrationSet, path: Path, pattern: re.Pattern[str], suffix: str) -> SchemaFile:
    set_name = migration_set.name
    match = pattern.match(path.name)
    if match is None or not path.is_file():
        raise MigrationError(f"{set_name}: {path.name} is not a schema file named NNNN_description{suffix}")
    if path.stat().st_size > limits.migration_file_size_max_bytes:
        raise MigrationError(f"{set_name}/{path.name}: over migration_file_size_max_bytes")
    data = path.read_bytes()
    checksum = hashlib.sha256(data).hexdigest()
    return SchemaFile(
        set_name, int(match.group(1)), path.name, data.decode(), checksum, migration_set.formerly
    )


def check_unchanged(file: SchemaFile, recorded: Recorded) -> None:
    """An applied file may not change: the same name and checksum as when it was recorded."""
    if (recorded.name, recorded.checksum) != (file.name, file.checksum):
        raise MigrationError(
            f"{file.label}: changed after it was applied"
            f" (recorded {recorded.name} sha256 {recorded.checksum}, now sha256 {file.checksum})"
        )


def carried_over(file: SchemaFile, former: Recorded | None) -> bool:
    """Whether `file`, which its set has not recorded, was applied under its set's former name:
    `former` is that set's record of the file's version, if any. It counts only for the same file name,
    and then must be unchanged; the caller records it under the set (with `former.applied_at_ms`)
    instead of applying it."""
    if former is None or former.name != file.name:
        return False
    check_unchanged(file, former)
    _log.info("schema file carried over", file=file.label, formerly=f"{file.formerly}/{former.name}")
    return True
