"""Typed settings of the fund transfer agency."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from jubao_server import limits


class FundTaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Holder shards of a fund created from now on: an investor's holdings and orders of a fund live in one
    # shard (by its fund account), each shard one partition. A fund keeps the count it was created with.
    holder_shard_count: int = Field(16, gt=0, le=limits.fundta_holder_shards_max)
    # How long a request id is remembered (AIP-155), with its first answer.
    request_ttl_s: int = Field(7 * 24 * 3600, gt=0, le=limits.row_ttl_s_max)
