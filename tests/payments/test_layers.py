"""The layers stay apart: the payments core (state, commands, records) imports no storage and no
platform code, and the shard runtime imports no product."""

from __future__ import annotations

import subprocess
import sys


def imported_by(module: str) -> set[str]:
    """The jubao_server modules importing `module` loads, in a fresh interpreter."""
    code = f"import sys, {module}; print(' '.join(m for m in sys.modules if m.startswith('jubao_server')))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_the_payments_core_is_pure() -> None:
    for module in ("jubao_server.payments.state", "jubao_server.payments.commands"):
        loaded = imported_by(module)
        assert not {m for m in loaded if m.startswith(("jubao_server.storage", "jubao_server.platform"))}, (
            loaded
        )


def test_the_shard_runtime_knows_no_product() -> None:
    loaded = imported_by("jubao_server.shards.runtime")
    assert not {m for m in loaded if m.startswith(("jubao_server.payments", "jubao_server.tenancy"))}, loaded
