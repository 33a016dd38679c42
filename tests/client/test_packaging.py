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


def test_cli_parses_its_command_line_without_grpc_or_rich() -> None:
    """`jubao --help` and usage errors stay quick: gRPC and rich load when a command runs."""
    probe = "import sys, jubao.cli.main; print(*sorted(m for m in ('grpc', 'rich') if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == []


def test_probe_detects_a_leak() -> None:
    assert "structlog" in leaked_modules("import structlog")
