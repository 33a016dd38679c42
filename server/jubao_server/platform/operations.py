"""Long-running operations (AIP-151) as tasks of this process: a product stores an operation's record
(its state and progress) before it launches the run, so the record answers every Get, and a run cut
short by a restart is launched again by the call that started it (its Start retried). One task per key
at a time; a run that raises is logged and leaves its record where it was."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable

import structlog


class Operations:
    """The runs in flight of one kind of operation (`kind` names it in the log)."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._log = structlog.get_logger(f"jubao.operations.{kind}")
        self._tasks: dict[Hashable, asyncio.Task[None]] = {}

    def running(self, key: Hashable) -> bool:
        return key in self._tasks

    def launch(self, key: Hashable, run: Callable[[], Awaitable[object]]) -> None:
        """Run `run()` as a task unless the run of `key` is already in flight."""
        if key in self._tasks:
            return
        task = asyncio.get_running_loop().create_task(self._logged(key, run), name=f"{self._kind}-{key}")
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._tasks.pop(key, None))

    async def _logged(self, key: Hashable, run: Callable[[], Awaitable[object]]) -> None:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:
            self._log.exception(f"{self._kind} stopped; start it again to resume", key=str(key))

    async def stop(self) -> None:
        """Cancel every run in flight and wait for them to end."""
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
