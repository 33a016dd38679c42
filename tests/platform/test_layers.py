"""Two layering rules, checked by importing modules in a fresh interpreter and looking at what they load.

* The domain knows nothing of gRPC: only the gRPC boundary (servicers, the call pipeline, forwarding, the
  gRPC host, the gRPC server's assembly) imports it. Domain errors carry a transport-free `ErrorCode` that
  each boundary maps, and a process that must not load gRPC (the Arrow Flight server: apache/arrow#13300)
  can use the rest: the composition root's product list and settings, and every `PRODUCT`.
* The host knows no product: nothing in `platform/`, `storage/`, `tenancy/`, `config.py` or the product
  protocol (`products.py`) imports a product's package; only the composition root (`app/`) lists them.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import jubao_server
from jubao_server.app import PRODUCTS

# Modules that are the gRPC boundary, by their dotted name's last part or whole name.
GRPC_BOUNDARY_SUFFIXES = (".service",)
GRPC_BOUNDARY_MODULES = frozenset(
    {
        "jubao_server.__main__",
        "jubao_server.app.grpc_server",
        "jubao_server.platform.pipeline",
        "jubao_server.platform.forwarding",
        "jubao_server.platform.server",
    }
)
HOST_PACKAGES = ("jubao_server.platform.", "jubao_server.storage.", "jubao_server.tenancy.")
HOST_MODULES = frozenset({"jubao_server.config", "jubao_server.products"})


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(jubao_server.__path__, prefix="jubao_server."))


def _domain_modules() -> list[str]:
    return [
        name
        for name in _modules()
        if name not in GRPC_BOUNDARY_MODULES and not name.endswith(GRPC_BOUNDARY_SUFFIXES)
    ]


def _host_modules() -> list[str]:
    return [name for name in _modules() if name in HOST_MODULES or name.startswith(HOST_PACKAGES)]


def _product_packages() -> list[str]:
    """The package of each enabled product: where its PRODUCT is declared."""
    return sorted({product.start.__module__.rpartition(".")[0] for product in PRODUCTS})


def _loaded(modules: list[str], watched: list[str]) -> list[str]:
    """The modules of `watched` (packages or modules, by name) that importing `modules` loads."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"watched = {watched!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if any(m == w or m.startswith(w + '.') "
        "for w in watched))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def _culprits(modules: list[str], watched: list[str]) -> list[str]:
    return [name for name in modules if _loaded([name], watched)]


def test_no_module_below_the_grpc_boundary_imports_grpc() -> None:
    modules = _domain_modules()
    assert len(modules) > 30, modules
    assert {"jubao_server.app", "jubao_server.payments.product"} <= set(modules)
    if _loaded(modules, ["grpc"]):
        culprits = _culprits(modules, ["grpc"])
        raise AssertionError(f"these modules load grpc, directly or through their imports: {culprits}")


def test_the_check_sees_a_module_that_loads_grpc() -> None:
    assert _loaded(["jubao_server.platform.pipeline"], ["grpc"])


def test_the_host_imports_no_product() -> None:
    modules = _host_modules()
    products = _product_packages()
    assert len(modules) > 30 and "jubao_server.platform.server" in modules, modules
    assert products == ["jubao_server.cocreation", "jubao_server.fundta", "jubao_server.payments"]
    if _loaded(modules, products):
        culprits = _culprits(modules, products)
        raise AssertionError(f"these host modules load a product, directly or through imports: {culprits}")


def test_the_check_sees_a_module_that_loads_a_product() -> None:
    assert "jubao_server.payments.ledger" in _loaded(["jubao_server.app"], _product_packages())
