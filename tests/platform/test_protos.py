"""The committed generated code is exactly what `make proto` produces from protos/."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from tests.platform.harness import REPO

GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _generated(root: Path) -> dict[str, Path]:
    files = [p for p in (root / "jubao").rglob("*") if p.name.endswith(GENERATED_SUFFIXES)]
    return {str(p.relative_to(root)): p for p in files}


def test_committed_protobuf_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_protos.py"), "--out", str(tmp_path)], check=True
    )
    fresh = _generated(tmp_path)
    committed = _generated(REPO / "clients" / "python")
    assert sorted(fresh) == sorted(committed), "generated files differ: run `make proto`"
    stale = [name for name, path in fresh.items() if not filecmp.cmp(path, committed[name], shallow=False)]
    assert not stale, f"stale generated code, run `make proto`: {stale}"
