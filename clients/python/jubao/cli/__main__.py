"""`python -m jubao.cli`: the `jubao` command (the co-creation query starts it to download a large result
over Arrow Flight in a process of its own)."""

from jubao.cli.main import app

app(prog_name="jubao")
