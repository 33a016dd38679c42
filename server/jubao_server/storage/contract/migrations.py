"""Migration sets and their versioned schema files, found and checked the same way by every backend."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
from pathlib import Path

from jubao_server import limits
from jubao_server.storage.contract.errors import MigrationError


@dataclasses.dataclass(frozen=True)
class MigrationSet:
    """A named folder of versioned schema files `NNNN_description.<suffix>` (`.sql` on SQLite, `.cql` on
    Cassandra, `.tables` in memory), applied in order, each once. An applied file may not change: its
    checksum is recorded and checked."""

    name: str
    directory: Path


@dataclasses.dataclass(frozen=True)
class SchemaFile:
    set_name: str
    version: int
    name: str
    text: str
    checksum: str  # sha256 of the file's bytes, hex

    @property
    def label(self) -> str:
        return f"{self.set_name}/{self.name}"


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
    files = sorted(
        (_read(migration_set.name, path, pattern, suffix) for path in paths), key=lambda f: f.version
    )
    versions = [f.version for f in files]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{migration_set.name}: two files share a version number")
    return files


def _read(set_name: str, path: Path, pattern: re.Pattern[str], suffix: str) -> SchemaFile:
    match = pattern.match(path.name)
    if match is None or not path.is_file():
        raise MigrationError(f"{set_name}: {path.name} is not a schema file named NNNN_description{suffix}")
    if path.stat().st_size > limits.migration_file_size_max_bytes:
        raise MigrationError(f"{set_name}/{path.name}: over migration_file_size_max_bytes")
    data = path.read_bytes()
    return SchemaFile(
        set_name, int(match.group(1)), path.name, data.decode(), hashlib.sha256(data).hexdigest()
    )


def check_unchanged(file: SchemaFile, recorded_name: str, recorded_checksum: str) -> None:
    """An applied file may not change: the same name and checksum as when it was recorded."""
    if (recorded_name, recorded_checksum) != (file.name, file.checksum):
        raise MigrationError(
            f"{file.label}: changed after it was applied"
            f" (recorded {recorded_name} sha256 {recorded_checksum}, now sha256 {file.checksum})"
        )
