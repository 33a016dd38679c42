"""Generate the Python protobuf and gRPC code of protos/ into the client package.

`python scripts/gen_protos.py` writes into clients/python; `--out DIR` writes elsewhere, which is how the
freshness test compares a new generation with the committed files.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
DEFAULT_OUT = ROOT / "clients" / "python"
GENERATED_PACKAGES = ("admin", "meta", "payments", "bulk/v1", "fundta", "cocreation", "type")
PACKAGE_INIT = "# Generated package; see scripts/gen_protos.py.\n"


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def clean(out: Path) -> None:
    for name in GENERATED_PACKAGES:
        shutil.rmtree(out / "jubao" / name, ignore_errors=True)


def run_protoc(out: Path) -> None:
    include = resources.files("grpc_tools") / "_proto"
    bin_dir = Path(sys.executable).parent
    args = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]
    subprocess.run(args, check=True)


def write_package_inits(out: Path) -> None:
    for proto in proto_files():
        package_dir = out / proto.relative_to(PROTO_ROOT).parent
        for directory in (package_dir, package_dir.parent):
            init = directory / "__init__.py"
            if not init.exists():
                init.write_text(PACKAGE_INIT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    out: Path = parser.parse_args().out
    (out / "jubao").mkdir(parents=True, exist_ok=True)
    clean(out)
    run_protoc(out)
    write_package_inits(out)


if __name__ == "__main__":
    main()
