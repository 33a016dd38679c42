"""Two jubao server processes on the local three-node Cassandra cluster (`make cassandra-cluster-up`), with
jubao's cluster settings (`scripts/cassandra/cluster.toml`: replication factor 3, QUORUM, SERIAL), for the
chaos and noisy-neighbour runs: the cluster's lock, its nodes killed and started by `node.py`, the servers
started, killed, paused and restarted on their ports, and every node and server put back at the end.

The runs kill and restart the shared cluster's nodes, so they hold the lock file that
`tests/storage/test_cluster.py` holds too: other checkouts' runs wait for it."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Final

from cassandra.cluster import Cluster

from loadtest.harness import scratch_dir
from loadtest.server_process import REPO, ServerProcess

NODE_PY: Final = REPO / "scripts" / "cassandra" / "node.py"
CLUSTER_CONFIG: Final = REPO / "scripts" / "cassandra" / "cluster.toml"
CLUSTER_LOCK_PATH: Final = Path(tempfile.gettempdir()) / "jubao-cassandra-cluster.lock"
# Starting a node waits until CQL answers. node.py gives a start 115 s and then stops the node; on a busy
# machine a node's start takes longer (seen: over two minutes at load average 25 to 50, where the retries
# of a start that timed out only started it from scratch again).
node_start_timeout_s: Final = 900.0
node_command_timeout_s: Final = node_start_timeout_s + 120.0
# A server is SERVING once its storage probe passes: on a cluster busy replaying a returned node's hints
# that took longer than the harness's usual minute (seen at load average 48).
server_start_timeout_s: Final = 600.0
migrate_timeout_s: Final = 600.0
drop_timeout_s: Final = 120.0
NODES: Final = (1, 2, 3)
SERVERS: Final = 2


class ClusterError(RuntimeError):
    """The cluster or a server did not do what the run asked of it."""


@contextlib.contextmanager
def cluster_lock() -> Iterator[None]:
    """Hold the cluster's lock (blocking until another run releases it)."""
    with CLUSTER_LOCK_PATH.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def node_py(args: list[str], timeout_s: float, env: dict[str, str] | None = None) -> CompletedProcess[str]:
    """`node.py ARGS` run from the checkout, its output captured (`env`: the whole environment, or this
    process's)."""
    return subprocess.run(
        [sys.executable, str(NODE_PY), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=REPO,
        env=env,
    )


def node_command(action: str, node: int | None = None, *, kill: bool = False) -> None:
    """`node.py cluster ACTION [--node N] [--kill]`; raises ClusterError with its output when it fails."""
    args = ["cluster", action]
    args += [] if node is None else ["--node", str(node)]
    args += ["--kill"] if kill else []
    env = {**os.environ, "JUBAO_CASSANDRA_START_TIMEOUT_S": str(node_start_timeout_s)}
    done = node_py(args, node_command_timeout_s, env)
    if done.returncode != 0:
        raise ClusterError(f"node.py {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}")


def cluster_dir() -> Path | None:
    """The folder of the running cluster's nodes (`node.py cluster where`), None when none runs."""
    done = node_py(["cluster", "where"], node_command_timeout_s)
    return Path(done.stdout.strip()) if done.returncode == 0 else None


def nodes_up(node: int | None = None) -> None:
    """Start the node (every node when None) unless it runs, and wait until CQL answers."""
    node_command("up", node)


@dataclasses.dataclass
class ClusterServers:
    """The servers on the cluster (each one gRPC process, no bulk plane) and their settings."""

    servers: list[ServerProcess]
    env: dict[str, str]
    scratch: Path
    keyspace: str
    restarts: int = 0

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(server.address for server in self.servers)

    def kill(self, index: int) -> None:
        """SIGKILL server `index`: its gRPC process first (it holds the leases), then the supervisor."""
        server = self.servers[index]
        for pid in server.serving_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.kill()

    def restart(self, index: int) -> None:
        """Start server `index` again on its port (its clients dial the same addresses)."""
        self.restarts += 1
        log_path = self.scratch / f"server-{index}-restart-{self.restarts}.log"
        port = self.servers[index].port
        self.servers[index] = ServerProcess.start(self.env, log_path, port, server_start_timeout_s)

    def pause(self, index: int) -> None:
        """SIGSTOP server `index`'s gRPC process: it holds its leases and connections but answers nothing."""
        for pid in self.servers[index].serving_pids():
            os.kill(pid, signal.SIGSTOP)

    def resume(self, index: int) -> None:
        for pid in self.servers[index].serving_pids():
            os.kill(pid, signal.SIGCONT)


def server_settings(keyspace: str, lease_ms: int) -> dict[str, str]:
    return {
        "JUBAO_CONFIG": str(CLUSTER_CONFIG),
        "JUBAO_STORAGE__CASSANDRA__KEYSPACE": keyspace,
        "JUBAO_PAYMENTS__SHARD_LEASE_MS": str(lease_ms),
        "JUBAO_SERVER__PROCESSES": "1",
        "JUBAO_BULK__ENABLED": "false",
        "JUBAO_TELEMETRY__LOG_LEVEL": "warning",
    }


def fresh_keyspace(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def cluster_servers(keyspace: str, lease_ms: int, *, drop: bool) -> Iterator[ClusterServers]:
    """Every node up, `keyspace` migrated (replication factor 3), two servers on it; at the end the servers
    stopped (killed when they do not stop), every node up again, and the keyspace dropped when `drop`.
    The caller holds the cluster's lock."""
    nodes_up()
    env = server_settings(keyspace, lease_ms)
    migrate_keyspace(keyspace)
    scratch = scratch_dir("cluster")
    started = ClusterServers([], env, scratch, keyspace)
    try:
        for index in range(SERVERS):
            log_path = scratch / f"server-{index}.log"
            started.servers.append(ServerProcess.start(env, log_path, timeout_s=server_start_timeout_s))
        yield started
    finally:
        for index, server in enumerate(started.servers):
            started.resume(index)
            try:
                server.terminate()
            except subprocess.TimeoutExpired:
                started.kill(index)
        nodes_up()
        if drop:
            drop_keyspace(keyspace)


def migrate_keyspace(keyspace: str) -> str:
    """`jubao-server migrate` on the cluster's `keyspace` (replication factor 3); what it printed."""
    env = {**os.environ, "JUBAO_CONFIG": str(CLUSTER_CONFIG), "JUBAO_STORAGE__CASSANDRA__KEYSPACE": keyspace}
    migrate = [sys.executable, "-m", "jubao_server", "migrate"]
    done = subprocess.run(
        migrate, cwd=REPO, env=env, capture_output=True, text=True, timeout=migrate_timeout_s, check=False
    )
    if done.returncode != 0:
        raise ClusterError(f"migrating {keyspace} failed: {done.stdout}{done.stderr}")
    return done.stdout


def drop_keyspace(keyspace: str) -> None:
    """Drop a run's keyspace, so that runs do not pile tables up on the shared cluster."""
    cassandra = tomllib.loads(CLUSTER_CONFIG.read_text())["storage"]["cassandra"]
    cluster = Cluster(cassandra["contact_points"], port=cassandra["port"])
    try:
        session = cluster.connect()
        session.execute(f'DROP KEYSPACE IF EXISTS "{keyspace}"', timeout=drop_timeout_s)
    finally:
        cluster.shutdown()


def wait_s(until_s: float) -> None:
    """Sleep until the monotonic time `until_s` (at once when it has passed)."""
    time.sleep(max(0.0, until_s - time.monotonic()))
