#!/usr/bin/env python3
"""Run local Apache Cassandra for development and tests (no Docker, no tarball): one node, or a cluster
of three.

The jars come from Maven Central (scripts/cassandra/pom.xml pins the version). The single node binds to
127.0.0.1 and keeps its data, commit log, caches, hints, logs and pid file under var/cassandra/. The
cluster's nodes bind to 127.0.0.1, 127.0.0.2 and 127.0.0.3 (Linux routes all of 127.0.0.0/8 to the
loopback, as ccm relies on) on ports of their own, so the single node and the cluster can run side by
side; node N keeps its files under var/cassandra-cluster/nodeN/.

    node.py fetch    download cassandra-all + runtime deps into the jar cache (once)
    node.py up       start the node (idempotent) and wait until CQL answers
    node.py down     stop the node: SIGTERM, bounded wait, then SIGKILL (idempotent)
    node.py status   exit 0 if the node answers CQL, 1 if it runs but does not answer, 3 if stopped
    node.py logs     print the tail of system.log and stdout.log
    node.py cluster up|down|status|logs [--node N] [--kill]
                     the same for the cluster's nodes (all of them, or node N): `up` starts them one
                     after another (the first is the seed); `down --kill` sends SIGKILL at once (a crash,
                     for fault tests); `status` also says how many peers each node sees;
                     `where` prints the folder of the cluster running on this machine, whichever
                     checkout started it

Environment:
    JUBAO_CASSANDRA_CACHE         jar cache folder            (default var/cache/cassandra)
    JUBAO_CASSANDRA_HEAP_MIN/MAX  -Xms / -Xmx                 (default 512m / 3g for the node, 1g for
                                  each of the cluster's three)
    JUBAO_CASSANDRA_PORT          CQL native transport port   (default 9042; the cluster's: 9142)
    JUBAO_CASSANDRA_STORAGE_PORT  internode port              (default 7000; the cluster's: 7100)
    JUBAO_CASSANDRA_CLUSTER_PORT / _CLUSTER_STORAGE_PORT      the cluster's ports
    JUBAO_CASSANDRA_CLUSTER_DIR   the cluster's folder (default var/cassandra-cluster): another checkout's,
                                  to stop and start the nodes it started (`cluster where` prints it)
    JUBAO_CASSANDRA_JVM_OPTS      extra JVM flags, shell-split, appended last
    JUBAO_CASSANDRA_START_TIMEOUT_S  how long `up` waits for CQL (default 115; a node that does not
                                  answer by then is stopped)
    JAVA_HOME                     used when it is a JDK 17

Dependency free on purpose: the readiness check speaks the CQL native protocol (v4) over a socket.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

SCRIPT_DIR = Path(__file__).resolve().parent
ROOT = SCRIPT_DIR.parent.parent
POM = SCRIPT_DIR / "pom.xml"
YAML_TEMPLATE = SCRIPT_DIR / "cassandra.yaml.in"
LOGBACK = SCRIPT_DIR / "logback.xml"
JVM_OPTIONS = SCRIPT_DIR / "jvm.options"

SINGLE_STATE_DIR = ROOT / "var" / "cassandra"
CLUSTER_STATE_DIR = Path(os.environ.get("JUBAO_CASSANDRA_CLUSTER_DIR") or ROOT / "var" / "cassandra-cluster")
NODE_SUBDIRS = ("data", "commitlog", "saved_caches", "hints", "cdc_raw", "logs", "conf/triggers")

HOST = "127.0.0.1"
CLUSTER_SIZE = 3
MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"
DEBIAN_JAVA17 = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java"
SUPPORTED_JAVA = (17, 11)  # in order of preference

# Every wait below is bounded by one of these.
FETCH_TIMEOUT_S = 1800.0
JAVA_PROBE_TIMEOUT_S = 20.0
START_TIMEOUT_S_DEFAULT = 115.0
STOP_TIMEOUT_S = 45.0
KILL_TIMEOUT_S = 15.0
CQL_IO_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.5
LOG_TAIL_LINES = 80

EXIT_NOT_RUNNING = 3
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class NodeError(Exception):
    """A failure the user should read; main() prints it and exits non-zero."""


# ---------------------------------------------------------------- settings


def env_str(name: str, default: str) -> str:
    return os.environ.get(name) or default


def start_timeout_s() -> float:
    raw = env_str("JUBAO_CASSANDRA_START_TIMEOUT_S", str(START_TIMEOUT_S_DEFAULT))
    try:
        timeout_s = float(raw)
    except ValueError:
        timeout_s = 0.0
    if timeout_s <= 0:
        raise NodeError(f"JUBAO_CASSANDRA_START_TIMEOUT_S={raw!r} is not a positive number of seconds")
    return timeout_s


def env_port(name: str, default: int) -> int:
    raw = env_str(name, str(default))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise NodeError(f"{name}={raw!r} is not a TCP port")
    return int(raw)


@dataclasses.dataclass(frozen=True)
class Node:
    """One node: where its files live, where it listens, and the cluster it belongs to."""

    label: str
    state_dir: Path
    host: str
    native_port: int
    storage_port: int
    cluster_name: str
    seeds: str
    # The node's one token (num_tokens 1) when the cluster's tokens are spread evenly; None: random.
    initial_token: int | None
    hinted_handoff: bool
    # -Xmx unless JUBAO_CASSANDRA_HEAP_MAX says otherwise.
    heap_max: str

    @property
    def conf_dir(self) -> Path:
        return self.state_dir / "conf"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "cassandra.pid"

    @property
    def system_log(self) -> Path:
        return self.log_dir / "system.log"

    @property
    def stdout_log(self) -> Path:
        return self.log_dir / "stdout.log"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.native_port}"


def single_node() -> Node:
    """The development and test node on 127.0.0.1."""
    storage_port = env_port("JUBAO_CASSANDRA_STORAGE_PORT", 7000)
    return Node(
        label="Cassandra",
        state_dir=SINGLE_STATE_DIR,
        host=HOST,
        native_port=env_port("JUBAO_CASSANDRA_PORT", 9042),
        storage_port=storage_port,
        cluster_name="jubao-dev",
        seeds=f"{HOST}:{storage_port}",
        initial_token=None,
        hinted_handoff=False,
        # The node the tests, `make run` on Cassandra and the bench use. With 1g its heap stayed near
        # full under the bench: humongous allocations started a concurrent cycle every 0.1-0.2 s, two
        # full collections took 452 and 334 ms, and the payments p99 at half load was 198-269 ms where
        # it is 23-36 with 3g (NOTES.md). Cassandra's own sizing would give this machine 6g.
        heap_max="3g",
    )


def cluster_nodes() -> list[Node]:
    """The cluster's nodes, 127.0.0.1 to 127.0.0.3, with tokens spread evenly over Murmur3's range (no
    random tokens, no bootstrap streaming: a new cluster starts balanced); the first is the seed. Hints
    are on: a node that was down gets the writes it missed when it comes back."""
    native_port = env_port("JUBAO_CASSANDRA_CLUSTER_PORT", 9142)
    storage_port = env_port("JUBAO_CASSANDRA_CLUSTER_STORAGE_PORT", 7100)
    step = 2**64 // CLUSTER_SIZE
    return [
        Node(
            label=f"Cassandra node {index}",
            state_dir=CLUSTER_STATE_DIR / f"node{index}",
            host=f"127.0.0.{index}",
            native_port=native_port,
            storage_port=storage_port,
            cluster_name="jubao-cluster",
            seeds=f"127.0.0.1:{storage_port}",
            initial_token=-(2**63) + (index - 1) * step,
            hinted_handoff=True,
            heap_max="1g",
        )
        for index in range(1, CLUSTER_SIZE + 1)
    ]


def cache_root() -> Path:
    return Path(env_str("JUBAO_CASSANDRA_CACHE", str(ROOT / "var" / "cache" / "cassandra"))).resolve()


def pinned_version() -> str:
    match = re.search(r"<cassandra\.version>\s*([^<\s]+)\s*</cassandra\.version>", POM.read_text())
    if match is None:
        raise NodeError(f"no <cassandra.version> property in {POM}")
    return match.group(1)


# ---------------------------------------------------------------- java


def java_major(java: str) -> int | None:
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=JAVA_PROBE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def java_candidates() -> list[str]:
    found: list[str] = []
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        found.append(str(Path(java_home) / "bin" / "java"))
    found.append(DEBIAN_JAVA17)
    on_path = shutil.which("java")
    if on_path:
        found.append(on_path)
    return [c for i, c in enumerate(found) if Path(c).is_file() and c not in found[:i]]


@functools.cache
def find_java() -> str:
    """JAVA_HOME if it is a JDK 17, else Debian's JDK 17, else `java` on PATH; must be 17 (or 11)."""
    majors = {candidate: java_major(candidate) for candidate in java_candidates()}
    for wanted in SUPPORTED_JAVA:
        for candidate, major in majors.items():
            if major == wanted:
                return candidate
    tried = ", ".join(f"{c} (major {m})" for c, m in majors.items()) or "nothing found"
    raise NodeError(f"Cassandra needs Java 17 (or 11); tried {tried}. Point JAVA_HOME at a JDK 17.")


# ---------------------------------------------------------------- fetch


def lib_dir(version: str) -> Path:
    return cache_root() / f"cassandra-{version}" / "lib"


def pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def fetched(lib: Path) -> bool:
    marker = lib.parent / "fetched.sha256"
    return marker.is_file() and marker.read_text().strip() == pom_digest() and any(lib.glob("*.jar"))


def fetch(version: str) -> Path:
    lib = lib_dir(version)
    if fetched(lib):
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise NodeError("Maven (mvn) is not on PATH; it is needed once to fetch Cassandra's jars")
    partial = lib.with_name("lib.partial")
    shutil.rmtree(partial, ignore_errors=True)
    started = time.monotonic()
    print(f"fetching cassandra-all {version} and its runtime dependencies into {lib} ...", flush=True)
    cmd = [mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(POM), "dependency:copy-dependencies"]
    cmd.append(f"-DoutputDirectory={partial}")
    try:
        result = subprocess.run(
            cmd,
            cwd=SCRIPT_DIR,
            timeout=FETCH_TIMEOUT_S,
            check=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except subprocess.TimeoutExpired as exc:
        raise NodeError(f"Maven fetch did not finish within {FETCH_TIMEOUT_S:.0f}s") from exc
    # Maven 3.8 writes colour resets even in batch mode with style.color=never: keep logs plain.
    print(ANSI_ESCAPE.sub("", result.stdout).strip(), end="", flush=True)
    if result.returncode != 0 or not any(partial.glob("cassandra-all-*.jar")):
        raise NodeError(f"Maven fetch failed (exit {result.returncode}): {shlex.join(cmd)}")
    shutil.rmtree(lib, ignore_errors=True)
    partial.rename(lib)
    (lib.parent / "fetched.sha256").write_text(pom_digest() + "\n")
    jars = list(lib.glob("*.jar"))
    size_mib = sum(jar.stat().st_size for jar in jars) / 2**20
    print(f"fetched {len(jars)} jars ({size_mib:.0f} MiB) in {time.monotonic() - started:.1f}s")
    return lib


# ---------------------------------------------------------------- config + command line


def render_config(node: Node) -> None:
    for sub in NODE_SUBDIRS:
        (node.state_dir / sub).mkdir(parents=True, exist_ok=True)
    values = {
        "STATE_DIR": str(node.state_dir),
        "CLUSTER_NAME": node.cluster_name,
        "SEEDS": node.seeds,
        "INITIAL_TOKEN": "" if node.initial_token is None else str(node.initial_token),
        "HINTED_HANDOFF": "true" if node.hinted_handoff else "false",
        "LISTEN_ADDRESS": node.host,
        "RPC_ADDRESS": node.host,
        "STORAGE_PORT": str(node.storage_port),
        "NATIVE_PORT": str(node.native_port),
    }
    text = YAML_TEMPLATE.read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    leftover = re.findall(r"@[A-Z_]+@", text)
    if leftover:
        raise NodeError(f"{YAML_TEMPLATE.name}: unknown placeholders {sorted(set(leftover))}")
    (node.conf_dir / "cassandra.yaml").write_text(text)
    shutil.copyfile(LOGBACK, node.conf_dir / "logback.xml")


def jvm_options() -> list[str]:
    lines = (line.strip() for line in JVM_OPTIONS.read_text().splitlines())
    return [line for line in lines if line.startswith("-")]


def java_command(node: Node, java: str, lib: Path) -> list[str]:
    jars = sorted(lib.glob("*.jar"))
    jamm = next((jar for jar in jars if jar.name.startswith("jamm-")), None)
    if jamm is None:
        raise NodeError(f"no jamm jar in {lib}; run `node.py fetch` again")
    conf_dir, log_dir = node.conf_dir, node.log_dir
    classpath = os.pathsep.join([str(conf_dir), *map(str, jars)])
    return [
        java,
        f"-Xms{env_str('JUBAO_CASSANDRA_HEAP_MIN', '512m')}",
        f"-Xmx{env_str('JUBAO_CASSANDRA_HEAP_MAX', node.heap_max)}",
        *jvm_options(),
        f"-javaagent:{jamm}",
        f"-XX:ErrorFile={log_dir}/hs_err_pid%p.log",
        # Every collection's pause, beside system.log (whose GCInspector names only those over 200 ms).
        f"-Xlog:gc:file={log_dir}/gc.log:time,uptime:filecount=3,filesize=10m",
        f"-Dcassandra.config={(conf_dir / 'cassandra.yaml').as_uri()}",
        f"-Dcassandra.storagedir={node.state_dir}",
        f"-Dcassandra.logdir={log_dir}",
        f"-Dcassandra.triggers_dir={conf_dir / 'triggers'}",
        f"-Dlogback.configurationFile={conf_dir / 'logback.xml'}",
        "-Dcassandra-foreground=no",  # any value keeps stdout/stderr open (they go to stdout.log)
        *shlex.split(os.environ.get("JUBAO_CASSANDRA_JVM_OPTS", "")),
        "-cp",
        classpath,
        MAIN_CLASS,
    ]


# ---------------------------------------------------------------- processes


def proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")


def is_our_node(node: Node, pid: int) -> bool:
    """True only for a live CassandraDaemon whose storage dir is this node's (in this checkout)."""
    args = proc_cmdline(pid)
    return MAIN_CLASS in args and f"-Dcassandra.storagedir={node.state_dir}" in args


def read_pid_file(node: Node) -> int | None:
    try:
        text = node.pid_file.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def scan_for_node(node: Node) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and is_our_node(node, int(entry.name)):
            return int(entry.name)
    return None


def find_node_pid(node: Node) -> int | None:
    """The running node's pid (pid file first, /proc scan if the file is missing or stale)."""
    pid = read_pid_file(node)
    if pid is not None and is_our_node(node, pid):
        return pid
    pid = scan_for_node(node)
    if pid is None:
        node.pid_file.unlink(missing_ok=True)
    elif node.state_dir.is_dir():
        node.pid_file.write_text(f"{pid}\n")
    return pid


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(POLL_INTERVAL_S)
    return condition()


def stop_pid(node: Node, pid: int, proc: subprocess.Popen[bytes] | None = None, *, kill: bool = False) -> str:
    """SIGTERM, wait up to STOP_TIMEOUT_S, then SIGKILL and wait up to KILL_TIMEOUT_S (`kill`: SIGKILL
    at once, as a crash would)."""

    def gone() -> bool:
        return proc.poll() is not None if proc is not None else not is_our_node(node, pid)

    steps = ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, KILL_TIMEOUT_S))
    for sig, timeout_s in steps[1:] if kill else steps:
        if gone():
            return "already gone"
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return "already gone"
        if wait_for(gone, timeout_s):
            return signal.Signals(sig).name
    raise NodeError(f"pid {pid} survived SIGKILL for {KILL_TIMEOUT_S:.0f}s")


def launch(node: Node, command: list[str]) -> subprocess.Popen[bytes]:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with node.system_log.open("a") as system_log:  # marks where this run starts in the appended log
        system_log.write(f"----- {stamp} node.py up: starting {MAIN_CLASS} -----\n")
    with node.stdout_log.open("wb") as out:
        out.write(f"# {stamp} {shlex.join(command)}\n\n".encode())
        out.flush()
        proc = subprocess.Popen(
            command,
            cwd=node.state_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not killed with the make / shell that started it
        )
    node.pid_file.write_text(f"{proc.pid}\n")
    return proc


# ---------------------------------------------------------------- CQL native protocol probe

CQL_VERSION_BYTE = 0x04  # protocol v4, request direction
OP_ERROR, OP_STARTUP, OP_READY, OP_OPTIONS, OP_SUPPORTED, OP_QUERY, OP_RESULT = 0, 1, 2, 5, 6, 7, 8
RESULT_ROWS = 2
CONSISTENCY_ONE = 0x0001
HEADER = struct.Struct(">BBhBi")


def cql_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">H", len(data)) + data


class Reader:
    """Cursor over a response body (CQL [int], [short], [string], [bytes])."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise ValueError("truncated CQL frame")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def int32(self) -> int:
        return int(struct.unpack(">i", self.take(4))[0])

    def uint16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def string(self) -> str:
        return self.take(self.uint16()).decode()


def recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:  # bounded: each recv() has the socket timeout and must make progress
        chunk = sock.recv(remaining)
        if not chunk:
            raise ConnectionError("connection closed mid-frame")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def request(sock: socket.socket, opcode: int, body: bytes, stream: int) -> tuple[int, bytes]:
    sock.sendall(HEADER.pack(CQL_VERSION_BYTE, 0, stream, opcode, len(body)) + body)
    _version, _flags, _stream, reply_op, length = HEADER.unpack(recv_exact(sock, HEADER.size))
    payload = recv_exact(sock, length)
    if reply_op == OP_ERROR:
        reader = Reader(payload)
        code = reader.int32()
        raise ConnectionError(f"CQL error 0x{code:04x}: {reader.string()}")
    return reply_op, payload


def first_column(payload: bytes) -> list[str]:
    """Column 0 of every row of a Rows result of one simple column (text); a null is ''."""
    reader = Reader(payload)
    if reader.int32() != RESULT_ROWS:
        raise ValueError("not a Rows result")
    flags, columns = reader.int32(), reader.int32()
    if flags & 0x0002:  # has_more_pages: paging state
        reader.take(reader.int32())
    if not flags & 0x0004:  # metadata present
        if flags & 0x0001:  # global table spec
            reader.string(), reader.string()
        for _ in range(columns):
            if not flags & 0x0001:
                reader.string(), reader.string()
            reader.string()  # column name
            reader.uint16()  # type id (text/varchar: no extra payload)
    if columns != 1:
        raise ValueError("not a result of one column")
    values = []
    for _ in range(reader.int32()):
        size = reader.int32()
        values.append(reader.take(size).decode() if size >= 0 else "")
    return values


def cql_column(node: Node, query: str) -> list[str]:
    """OPTIONS, STARTUP, then `query` (of one text column) over one connection to the node."""
    with socket.create_connection((node.host, node.native_port), timeout=CQL_IO_TIMEOUT_S) as sock:
        sock.settimeout(CQL_IO_TIMEOUT_S)
        if request(sock, OP_OPTIONS, b"", 1)[0] != OP_SUPPORTED:
            raise ConnectionError("unexpected reply to OPTIONS")
        startup = struct.pack(">H", 1) + cql_string("CQL_VERSION") + cql_string("3.0.0")
        if request(sock, OP_STARTUP, startup, 2)[0] != OP_READY:
            raise ConnectionError("STARTUP not answered with READY (authentication enabled?)")
        body = struct.pack(">i", len(query)) + query.encode() + struct.pack(">HB", CONSISTENCY_ONE, 0)
        opcode, payload = request(sock, OP_QUERY, body, 3)
        if opcode != OP_RESULT:
            raise ConnectionError(f"unexpected opcode {opcode} for QUERY")
        return first_column(payload)


def probe(node: Node) -> str | None:
    """The node's release version when it answers CQL (`SELECT release_version FROM system.local`)."""
    try:
        rows = cql_column(node, "SELECT release_version FROM system.local")
    except (OSError, ValueError):
        return None
    return rows[0] if rows else None


def peers_known(node: Node) -> int | None:
    """How many peers the node knows of (system.peers_v2), or None when it does not answer."""
    try:
        return len(cql_column(node, "SELECT release_version FROM system.peers_v2"))
    except (OSError, ValueError):
        return None


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(CQL_IO_TIMEOUT_S)
        return sock.connect_ex((host, port)) == 0


# ---------------------------------------------------------------- logs


def tail(path: Path, lines: int) -> str:
    if not path.is_file():
        return f"({path} does not exist)\n"
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 512 * lines))  # enough bytes for `lines` long log lines
        text = handle.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:]) + "\n"


def print_logs(node: Node, lines: int, stream: TextIO) -> None:
    for path in (node.system_log, node.stdout_log):
        # Relative to the checkout when the node is its own; in full when it is another's (a cluster dir).
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"===== last {lines} lines of {shown} =====", file=stream)
        print(tail(path, lines), end="", file=stream)


# ---------------------------------------------------------------- one node


def wait_ready(node: Node, alive: Callable[[], bool]) -> str:
    """Poll CQL until it answers; NodeError if the process dies or the start timeout passes."""
    timeout_s = start_timeout_s()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise NodeError(f"the {node.label} process exited during start-up")
        release = probe(node)
        if release is not None:
            return release
        time.sleep(POLL_INTERVAL_S)
    raise NodeError(f"CQL did not answer on {node.address} within {timeout_s:.0f}s")


def check_ports_free(node: Node) -> None:
    for port in (node.native_port, node.storage_port):
        if port_in_use(node.host, port):
            raise NodeError(f"{node.host}:{port} is already taken by another process (another Cassandra?)")


def up_existing(node: Node, pid: int) -> None:
    print(f"{node.label} is already running (pid {pid}); checking CQL on {node.address}")
    try:
        release = wait_ready(node, lambda: is_our_node(node, pid))
    except NodeError as exc:
        print_logs(node, LOG_TAIL_LINES, sys.stderr)
        raise NodeError(f"{exc}; try `node.py down` then `node.py up`") from exc
    print(f"{node.label} {release} is up on {node.address} (pid {pid})")


def up_new(node: Node, java: str, lib: Path) -> None:
    check_ports_free(node)
    render_config(node)
    started = time.monotonic()
    proc = launch(node, java_command(node, java, lib))
    print(f"started {MAIN_CLASS} (pid {proc.pid}, {java}); waiting for CQL on {node.address} ...")
    try:
        release = wait_ready(node, lambda: proc.poll() is None)
    except NodeError as exc:
        print_logs(node, LOG_TAIL_LINES, sys.stderr)
        stop_pid(node, proc.pid, proc)
        node.pid_file.unlink(missing_ok=True)
        raise NodeError(f"{exc} (exit code {proc.returncode}); full logs in {node.log_dir}") from exc
    elapsed = time.monotonic() - started
    print(f"{node.label} {release} is up on {node.address} (pid {proc.pid}); start took {elapsed:.1f}s")


def node_up(node: Node, lib: Path) -> None:
    """Start the node unless it runs (Java is looked for only then), and wait until CQL answers."""
    pid = find_node_pid(node)
    if pid is not None:
        up_existing(node, pid)
    else:
        up_new(node, find_java(), lib)


def node_down(node: Node, *, kill: bool) -> None:
    pid = find_node_pid(node)
    if pid is None:
        print(f"{node.label} is not running")
        return
    started = time.monotonic()
    how = stop_pid(node, pid, kill=kill)
    node.pid_file.unlink(missing_ok=True)
    print(f"{node.label} (pid {pid}) stopped ({how}) in {time.monotonic() - started:.1f}s")


def node_status(node: Node) -> int:
    """Exit 0 if the node answers CQL, 1 if it runs but does not answer, 3 if it is not running."""
    pid = find_node_pid(node)
    if pid is None:
        other = probe(node)
        elsewhere = (
            f"; a node not started here (Cassandra {other}) answers on {node.address}" if other else ""
        )
        print(f"{node.label} is not running (no node of this checkout){elsewhere}")
        return EXIT_NOT_RUNNING
    release = probe(node)
    if release is None:
        print(f"{node.label} is running (pid {pid}) but CQL does not answer on {node.address}")
        return 1
    print(f"{node.label} {release} is running (pid {pid}), CQL answers on {node.address}")
    return 0


# ---------------------------------------------------------------- commands


def cmd_fetch(_args: argparse.Namespace) -> int:
    version = pinned_version()
    lib = fetch(version)
    print(f"Cassandra {version}: {len(list(lib.glob('*.jar')))} jars in {lib}")
    return 0


def cmd_up(_args: argparse.Namespace) -> int:
    node_up(single_node(), fetch(pinned_version()))
    return 0


def cmd_down(_args: argparse.Namespace) -> int:
    node_down(single_node(), kill=False)
    return 0


def cmd_status(_args: argparse.Namespace) -> int:
    return node_status(single_node())


def cmd_logs(args: argparse.Namespace) -> int:
    print_logs(single_node(), args.lines, sys.stdout)
    return 0


def chosen_nodes(args: argparse.Namespace) -> list[Node]:
    nodes = cluster_nodes()
    if args.node is None:
        return nodes
    if not 1 <= args.node <= len(nodes):
        raise NodeError(f"--node {args.node}: the cluster has nodes 1 to {len(nodes)}")
    return [nodes[args.node - 1]]


def running_cluster_dir() -> Path | None:
    """The folder of the cluster whose first node runs on this machine (started by any checkout)."""
    prefix = "-Dcassandra.storagedir="
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        args = proc_cmdline(int(entry.name))
        for arg in args if MAIN_CLASS in args else ():
            if arg.startswith(prefix) and Path(arg.removeprefix(prefix)).name == "node1":
                return Path(arg.removeprefix(prefix)).parent
    return None


def cmd_cluster(args: argparse.Namespace) -> int:
    if args.action == "where":
        found = running_cluster_dir()
        if found is None:
            print("no cluster is running on this machine", file=sys.stderr)
            return EXIT_NOT_RUNNING
        print(found)
        return 0
    nodes = chosen_nodes(args)
    if args.action == "up":
        lib = fetch(pinned_version())
        for node in nodes:  # one after another: a node joins a ring its seed already formed
            node_up(node, lib)
        return 0
    if args.action == "down":
        for node in reversed(nodes):
            node_down(node, kill=args.kill)
        return 0
    if args.action == "logs":
        for node in nodes:
            print_logs(node, args.lines, sys.stdout)
        return 0
    return cluster_status(nodes)


def cluster_status(nodes: list[Node]) -> int:
    """Each node's state and the peers it knows; the worst of the nodes' exit codes (0 answering, 1 running
    but not answering, 3 not running)."""
    codes = []
    for node in nodes:
        code = node_status(node)
        codes.append(code)
        peers = peers_known(node) if code == 0 else None
        if peers is not None:
            print(f"  knows {peers} of its {CLUSTER_SIZE - 1} peers")
    return max(codes, key=lambda code: (code != 0, code))


def parse_args(argv: list[str]) -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("fetch", cmd_fetch), ("up", cmd_up), ("down", cmd_down), ("status", cmd_status)):
        sub.add_parser(name).set_defaults(func=func)
    logs = sub.add_parser("logs")
    logs.add_argument("-n", "--lines", type=int, default=LOG_TAIL_LINES)
    logs.set_defaults(func=cmd_logs)
    cluster = sub.add_parser("cluster")
    cluster.add_argument("action", choices=("up", "down", "status", "logs", "where"))
    cluster.add_argument("--node", type=int, help="only node N (1 to 3)")
    cluster.add_argument("--kill", action="store_true", help="down: SIGKILL at once, as a crash")
    cluster.add_argument("-n", "--lines", type=int, default=LOG_TAIL_LINES)
    cluster.set_defaults(func=cmd_cluster)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args))
    except NodeError as exc:
        print(f"node.py {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
