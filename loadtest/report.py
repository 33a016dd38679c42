"""The figure format of `loadtest/results/latest.json`."""

from __future__ import annotations

from typing import Any

Figure = dict[str, Any]


def figure(name: str, value: float, unit: str, backend: str, notes: str) -> Figure:
    return {"name": name, "value": value, "unit": unit, "backend": backend, "notes": notes}
