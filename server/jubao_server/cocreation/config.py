"""Typed settings of the co-creation product (`[cocreation]`, `JUBAO_COCREATION__*`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from jubao_server import limits


class CocreationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Threads DuckDB runs one query on (the gRPC server's event loop goes on meanwhile).
    query_threads: int = Field(2, gt=0, le=limits.cocreation_query_threads_max)
    # How often each server looks for expired collaborations (their datasets' rows are deleted then).
    expiry_sweep_s: int = Field(60, gt=0, le=limits.cocreation_expiry_sweep_s_max)
    # How long a training holds its model without renewing: past it, a RUNNING model whose server stopped
    # is resumed by the next call that reads it.
    model_lease_ms: int = Field(
        limits.cocreation_model_lease_ms_default,
        ge=limits.cocreation_model_lease_ms_min,
        le=limits.cocreation_model_lease_ms_max,
    )
    # `make run` seeds the 运费险 demo collaboration (`demo.py`) with this many orders and a fifth as many
    # policies; 0: no demo.
    demo_orders: int = Field(0, ge=0, le=limits.cocreation_dataset_rows_max)
