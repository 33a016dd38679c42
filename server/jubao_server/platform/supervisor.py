"""`jubao-server serve`: a small parent process that runs the servers as its children (the gRPC server,
and the Arrow Flight server of the bulk plane, which must not share its process: apache/arrow#13300).

* Each child is told the supervisor's pid and arms `PR_SET_PDEATHSIG` (`platform/lifeline.py`), so no
  child outlives the supervisor, even one killed with SIGKILL.
* Each child writes its bound port to a pipe once it serves; the supervisor prints the banner then.
* A child that exits on its own is logged and started again after a backoff (1 s, doubling, at most
  `supervisor_backoff_max_s`), at most `supervisor_restarts_max` times; past that the supervisor stops the
  other children cleanly and exits 1.
* SIGTERM or SIGINT: every child gets SIGTERM (the gRPC server drains), then the supervisor waits for them
  (SIGKILL after `stop_timeout_s`) and exits 0. One that comes while the children start (the Flight server
  can take many seconds on a loaded machine) stops the start there: the child starting is stopped, the
  rest are not started.

It imports neither gRPC nor Arrow, and keeps no threads: its children are forked from a plain process.
"""

from __future__ import annotations

import dataclasses
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Final

import structlog

from jubao_server import limits

log = structlog.get_logger("jubao.supervisor")

start_timeout_s: Final = 120.0
stop_timeout_s: Final = 45.0
poll_interval_s: Final = 0.2
backoff_first_s: Final = 1.0


class ChildFailed(Exception):
    """A child did not start, or crashed more often than it may be restarted."""


@dataclasses.dataclass(frozen=True)
class ChildSpec:
    """A server to run: its name and the command (the supervisor adds `--ready-fd` and `--parent-pid`)."""

    name: str
    command: Sequence[str]


@dataclasses.dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes]
    port: int
    restarts: int = 0


class Supervisor:
    def __init__(self, specs: Sequence[ChildSpec]) -> None:
        self._specs = specs
        self._children: dict[str, _Child] = {}
        self._stopping = False

    @property
    def ports(self) -> dict[str, int]:
        return {name: child.port for name, child in self._children.items()}

    def request_stop(self, *_: object) -> None:
        self._stopping = True

    def start(self) -> None:
        """Start every child and wait until each serves; on a failure stop those started and raise. A stop
        requested meanwhile ends the start: the child starting is stopped and the rest are not started."""
        for spec in self._specs:
            try:
                started = None if self._stopping else _spawn(spec, self._stop_requested)
            except ChildFailed:
                self.stop()
                raise
            if started is None:
                log.info("stop requested while starting; not starting the rest", server=spec.name)
                return
            self._children[spec.name] = _Child(spec, *started)

    def run(self, on_started: Callable[[], None] | None = None) -> int:
        """Start the children, then watch them until a stop is requested; the exit code."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        try:
            self.start()
        except ChildFailed as error:
            log.error("server did not start", error=str(error))
            return 1
        if on_started is not None and not self._stopping:
            on_started()
        code = 0
        while not self._stopping:
            time.sleep(poll_interval_s)
            try:
                self._restart_exited()
            except ChildFailed as error:
                log.error("giving up on a server; stopping the others", error=str(error))
                code = 1
                break
        self.stop()
        return code

    def stop(self) -> None:
        """SIGTERM every child, wait for them, SIGKILL any still running after `stop_timeout_s`."""
        for child in self._children.values():
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline_s = time.monotonic() + stop_timeout_s
        for child in self._children.values():
            _wait_or_kill(child.spec, child.process, deadline_s)

    def _restart_exited(self) -> None:
        for child in self._children.values():
            code = child.process.poll()
            if code is None or self._stopping:
                continue
            if child.restarts >= limits.supervisor_restarts_max:
                raise ChildFailed(f"{child.spec.name} exited {code} after {child.restarts} restarts")
            delay_s = min(backoff_first_s * 2**child.restarts, limits.supervisor_backoff_max_s)
            log.error("server exited; restarting it", server=child.spec.name, exit_code=code, delay_s=delay_s)
            time.sleep(delay_s)
            started = _spawn(child.spec, self._stop_requested)
            if started is None:
                return
            child.process, port = started
            child.restarts += 1
            if port != child.port:
                log.warning("server restarted on another port", server=child.spec.name, port=port)
                child.port = port

    def _stop_requested(self) -> bool:
        return self._stopping


def _spawn(spec: ChildSpec, stop_requested: Callable[[], bool]) -> tuple[subprocess.Popen[bytes], int] | None:
    """Start the child and wait (at most `start_timeout_s`) for the port it writes once it serves; None,
    with the child stopped, when `stop_requested` says so meanwhile."""
    read_fd, write_fd = os.pipe()
    command = [*spec.command, "--ready-fd", str(write_fd), "--parent-pid", str(os.getpid())]
    try:
        process = subprocess.Popen(command, pass_fds=(write_fd,))
    finally:
        os.close(write_fd)
    line = b""
    with os.fdopen(read_fd, "rb") as ready:
        for _ in range(int(start_timeout_s / poll_interval_s)):
            readable, _, _ = select.select([ready], [], [], poll_interval_s)
            if readable:
                line = ready.readline()
                break
            if stop_requested():
                _stop_child(spec, process)
                return None
    if not line.strip().isdigit():
        if process.poll() is None:
            process.kill()
        process.wait()
        raise ChildFailed(f"{spec.name} did not start (exit {process.returncode})")
    log.info("server started", server=spec.name, pid=process.pid, port=int(line))
    return process, int(line)


def _stop_child(spec: ChildSpec, process: subprocess.Popen[bytes]) -> None:
    """SIGTERM one child and wait for it (SIGKILL after `stop_timeout_s`)."""
    process.send_signal(signal.SIGTERM)
    _wait_or_kill(spec, process, time.monotonic() + stop_timeout_s)


def _wait_or_kill(spec: ChildSpec, process: subprocess.Popen[bytes], deadline_s: float) -> None:
    try:
        process.wait(max(0.0, deadline_s - time.monotonic()))
    except subprocess.TimeoutExpired:
        log.warning("server did not stop in time; killed", server=spec.name)
        process.kill()
        process.wait()


def python_module(module: str, *args: str) -> list[str]:
    """The command that runs `python -m module args` with this interpreter."""
    return [sys.executable, "-m", module, *args]
