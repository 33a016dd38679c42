from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.platform.harness import Running, demo_keys, settings_for, start


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    handle = await start(settings_for(tmp_path / "jubao.db"))
    yield handle
    await handle.close()


@pytest.fixture(scope="session")
def keys() -> dict[str, str]:
    return demo_keys()
