"""A child process of `jubao-server serve` never outlives it: on Linux the kernel sends the child SIGKILL
when its parent dies (`prctl(PR_SET_PDEATHSIG)`), even when the parent was killed with SIGKILL and ran
no code of its own. The child checks that its parent is still the supervisor right after arming it, so a
parent that died before the call is noticed too. Elsewhere the child polls its parent id instead."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from typing import Final

PR_SET_PDEATHSIG: Final = 1
poll_interval_s: Final = 0.5


def die_with_parent(parent_pid: int) -> None:
    """Make this process end when the process `parent_pid` (its parent) ends."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        threading.Thread(target=_watch_parent, args=(parent_pid,), name="lifeline", daemon=True).start()
    if os.getppid() != parent_pid:
        os._exit(1)


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(poll_interval_s)
    os._exit(1)
