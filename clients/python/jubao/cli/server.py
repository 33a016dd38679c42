"""`jubao migrate`: apply the schema files to the configured storage. It runs the server package's
migration in this process, so it needs `jubao-server` installed next to the client."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer()

ConfigOption = Annotated[Path | None, typer.Option(help="Server settings file (TOML); else JUBAO_CONFIG.")]


@app.command()
def migrate(config: ConfigOption = None) -> None:
    """Apply pending schema files (SQLite or Cassandra, as the server settings say)."""
    try:
        server_main = importlib.import_module("jubao_server.__main__")
    except ModuleNotFoundError:
        typer.echo("ERROR jubao migrate needs the jubao-server package installed", err=True)
        raise typer.Exit(2) from None
    arguments = ["--config", str(config)] if config is not None else []
    server_main.main([*arguments, "migrate"])
