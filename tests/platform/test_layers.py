"""The domain knows nothing of gRPC: only the gRPC boundary (servicers, the call pipeline, forwarding,
the server assembly) imports it. Domain errors carry a transport-free `ErrorCode` that each boundary maps,
and a process that must not load gRPC (the Arrow Flight server: apache/arrow#13300) can use the rest."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import jubao_server

# Modules that are the gRPC boundary, by their dotted name's last part or whole name.
GRPC_BOUNDARY_SUFFIXES = (".service",)
GRPC_BOUNDARY_MODULES = frozenset(
    {
        "jubao_server.__main__",
        "jubao_server.platform.pipeline",
        "jubao_server.platform.forwarding",
        "jubao_server.platform.server",
    }
)


def _domain_modules() -> list[str]:
    names = [
        module.name
        for module in pkgutil.walk_packages(jubao_server.__path__, prefix="jubao_server.")
        if module.name not in GRPC_BOUNDARY_MODULES and not module.name.endswith(GRPC_BOUNDARY_SUFFIXES)
    ]
    return sorted(names)


def _loads_grpc(modules: list[str]) -> bool:
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('grpc' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return done.stdout.strip() == "True"


def test_no_module_below_the_grpc_boundary_imports_grpc() -> None:
    modules = _domain_modules()
    assert len(modules) > 30, modules
    if _loads_grpc(modules):
        culprits = [name for name in modules if _loads_grpc([name])]
        raise AssertionError(f"these modules load grpc, directly or through their imports: {culprits}")


def test_the_check_sees_a_module_that_loads_grpc() -> None:
    assert _loads_grpc(["jubao_server.platform.pipeline"])
