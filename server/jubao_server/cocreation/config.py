"""Typed settings of the co-creation product (`[cocreation]`, `JUBAO_COCREATION__*`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class CocreationSettings(BaseModel):
    """The product has no settings of its own yet: its bounds are in `limits.py` (`cocreation_*`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
