"""`jubao-server serve` runs the gRPC and Arrow Flight servers as child processes: a child that crashes is
started again, and no child outlives the supervisor, even one killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

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


def _children_or_none(pid: int) -> list[int]:
    try:
        return _children(pid)
    except FileNotFoundError:
        return []
