"""`jubao-server serve` runs the gRPC and Arrow Flight servers as child processes: a child that crashes is
started again, and no child outlives the supervisor, even one killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from jubao_server.platform.supervisor import ChildSpec, Supervisor

from loadtest.server_process import ServerProcess

WAIT_S: Final = 30.0


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _command(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline_s = time.monotonic() + WAIT_S
    while time.monotonic() < deadline_s:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not in time: {what}")


def _start(tmp_path: Path) -> tuple[ServerProcess, dict[str, int]]:
    server = ServerProcess.start(
        {"JUBAO_STORAGE__SQLITE__PATH": str(tmp_path / "jubao.db")}, tmp_path / "server.log"
    )
    _wait(lambda: '"event": "jubao started"' in server.log_text(), "both servers serving")
    children = {
        ("bulk" if "flight_server" in _command(pid) else "grpc"): pid for pid in _children(server.process.pid)
    }
    assert set(children) == {"grpc", "bulk"}, children
    return server, children


def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    server, children = _start(tmp_path)
    try:
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        _wait(lambda: not any(_alive(pid) for pid in children.values()), "no orphan left")
    finally:
        for pid in children.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_crashed_child_is_started_again(tmp_path: Path) -> None:
    server, children = _start(tmp_path)
    try:
        os.kill(children["bulk"], signal.SIGKILL)
        _wait(
            lambda: (
                len(_children(server.process.pid)) == 2
                and children["bulk"] not in _children(server.process.pid)
            ),
            "the Flight server restarted",
        )
        assert '"event": "server exited; restarting it"' in server.log_text()
        assert _alive(children["grpc"])
        assert server.terminate() == 0
        assert not any(_alive(pid) for pid in _children_or_none(server.process.pid))
    finally:
        server.kill()


def test_a_stop_during_the_start_stops_the_child_starting_and_starts_no_more(tmp_path: Path) -> None:
    """SIGTERM while a child starts (the Flight server can take many seconds on a loaded machine): the
    supervisor does not wait for it to serve, nor start the next."""
    pid_file = tmp_path / "slow.pid"
    slow = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)"
    supervisor = Supervisor(
        [
            ChildSpec("slow", [sys.executable, "-c", slow, str(pid_file)]),
            ChildSpec("next", [sys.executable, "-c", f"open({str(tmp_path / 'next')!r}, 'w')"]),
        ]
    )
    starting = threading.Thread(target=supervisor.start)
    starting.start()
    _wait(pid_file.exists, "the slow child runs")
    _wait(lambda: bool(pid_file.read_text()), "the slow child wrote its pid")
    began_s = time.monotonic()
    supervisor.request_stop()
    starting.join(WAIT_S)
    assert not starting.is_alive()
    assert time.monotonic() - began_s < 5, "the start ended when the stop came, not when the child served"
    assert not _alive(int(pid_file.read_text()))
    assert supervisor.ports == {}
    assert not (tmp_path / "next").exists()


def _children_or_none(pid: int) -> list[int]:
    try:
        return _children(pid)
    except FileNotFoundError:
        return []
