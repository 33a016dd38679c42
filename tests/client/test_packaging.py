"""The client distribution stands alone: importing it pulls in nothing of the server or its dependencies."""

from __future__ import annotations

import subprocess
import sys

SERVER_ONLY_MODULES = (
    "jubao_server",
    "pydantic",
    "structlog",
    "cassandra",
    "opentelemetry.sdk",
    "prometheus_client",
)


def leaked_modules(imports: str) -> list[str]:
    """Modules of SERVER_ONLY_MODULES loaded by a fresh interpreter after `imports`."""
    leaked = (
        f"n for n in sys.modules if any(n == m or n.startswith(m + '.') for m in {SERVER_ONLY_MODULES!r})"
    )
    probe = f"import sys\n{imports}\nprint(*sorted({leaked}))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.split()


def test_client_and_cli_import_no_server_module() -> None:
    assert leaked_modules("import jubao.client, jubao.cli.main") == []


def test_cli_parses_its_command_line_without_grpc_rich_or_arrow() -> None:
    """`jubao --help` and usage errors stay quick: gRPC, rich and pyarrow load when a command runs."""
    wanted = ("grpc", "rich", "pyarrow")
    probe = f"import sys, jubao.cli.main; print(*sorted(m for m in {wanted!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == []


def test_the_bulk_client_loads_no_grpc() -> None:
    """Arrow Flight and grpcio must not share a process (apache/arrow#13300): the bulk client, its errors,
    the bulk commands and the process that downloads a co-creation query's kept result never load grpcio."""
    probe = (
        "import sys, jubao.bulk.client, jubao.bulk.results, jubao.cli.bulk, jubao.errors;"
        " print('grpc' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["False"]


def test_probe_detects_a_leak() -> None:
    assert "structlog" in leaked_modules("import structlog")
