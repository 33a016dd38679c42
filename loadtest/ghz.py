"""A cross-check of the harness: ghz (a Go gRPC load tool, `make ghz` puts it in var/tools/bin) sends the
same authenticated MetaService.Ping, closed loop, and its ceiling is set beside the harness's own."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from typing import Final

from loadtest.engine import Target
from loadtest.report import Figure, figure
from loadtest.server_process import REPO

GHZ: Final = REPO / "var" / "tools" / "bin" / "ghz"
PROTO: Final = REPO / "protos" / "jubao" / "meta" / "v1" / "meta.proto"
PING: Final = "jubao.meta.v1.MetaService.Ping"
EXIT_GRACE_S: Final = 60.0
AGREEMENT_SHARE: Final = 0.2


@dataclasses.dataclass(frozen=True)
class GhzLoad:
    seconds: float
    concurrency: int
    connections: int


def ghz_command(target: Target, load: GhzLoad) -> list[str]:
    return [
        str(GHZ),
        "--insecure",
        "--proto",
        str(PROTO),
        "--import-paths",
        str(REPO / "protos"),
        "--call",
        PING,
        "--metadata",
        json.dumps({"authorization": f"Bearer {target.api_key}"}),
        "--concurrency",
        str(load.concurrency),
        "--connections",
        str(load.connections),
        "--duration",
        f"{load.seconds:g}s",
        "--duration-stop",
        "ignore",
        "--format",
        "json",
        target.endpoint,
    ]


def ghz_figure(target: Target, load: GhzLoad, harness_per_s: float) -> Figure | None:
    """`ghz_empty_rpc_per_s`, or None (said why) when ghz is not installed."""
    if not GHZ.exists():
        print(f"bench: {GHZ} is missing (make ghz needs Go); ghz_empty_rpc_per_s is left out")
        return None
    done = subprocess.run(
        ghz_command(target, load), capture_output=True, check=True, timeout=load.seconds + EXIT_GRACE_S
    )
    result = json.loads(done.stdout)
    per_s = float(result["rps"])
    statuses = result.get("statusCodeDistribution") or {}
    errors = sum(count for status, count in statuses.items() if status != "OK")
    ratio = per_s / harness_per_s if harness_per_s else 0.0
    notes = (
        f"{_version()}: the same authenticated MetaService.Ping, {load.concurrency} in flight over "
        f"{load.connections} connections (closed loop), {result['count']} calls, {errors} errors in "
        f"{load.seconds:g} s; {ratio:.2f} x grpc_empty_rpc_per_s ({harness_per_s:.0f}/s)"
    )
    return figure("ghz_empty_rpc_per_s", round(per_s), "calls/s", "none", notes + _explanation(ratio))


def _explanation(ratio: float) -> str:
    if abs(ratio - 1) <= AGREEMENT_SHARE:
        return "; within 20%: the harness's Python clients measure about the ceiling a Go client does"
    cpus = os.cpu_count()
    if ratio > 1:
        return (
            f"; more than 20% apart: on {cpus} cores the client competes with the server for CPU, and the Go "
            "client spends much less CPU per call than the Python SDK workers of the harness, leaving the "
            "server more; the harness's figure is what Python SDK clients on the same machine get"
        )
    return (
        f"; more than 20% apart, ghz lower: its {cpus}-core client and the server share the CPU, and ghz's "
        "connections are fewer than the server's threads could serve"
    )


def _version() -> str:
    """ghz's module version, read from the binary by `go version -m`."""
    go = shutil.which("go")
    if go is None:
        return "ghz"
    info = subprocess.run([go, "version", "-m", str(GHZ)], capture_output=True, text=True, check=False)
    versions = [
        line.split()[2]
        for line in info.stdout.splitlines()
        if line.split()[:2] == ["mod", "github.com/bojand/ghz"]
    ]
    return f"ghz {versions[0]}" if versions else "ghz"
