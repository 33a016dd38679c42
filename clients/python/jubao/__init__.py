"""jubao: Python SDK of the jubao financial cloud. Generated API code lives in `jubao.<area>.v1`."""
