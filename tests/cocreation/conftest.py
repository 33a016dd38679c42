"""The bulk plane's fixtures (a migrated store with the demo tenants on every shared backend, the Flight
process pointed at it, the demo keys) for the tests of datasets' rows."""

from __future__ import annotations

from tests.bulk.conftest import flight_process, keys, pytest_terminal_summary, store

__all__ = ["flight_process", "keys", "pytest_terminal_summary", "store"]
