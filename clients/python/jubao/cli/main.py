"""The `jubao` command: operate and try the jubao service. Each command group lives in its own module."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from jubao.cli import bulk, fundta, keys, meta, payments, reconcile, server, tenants
from jubao.cli import cocreation as cocreation_cli
from jubao.cli.common import CliState
from jubao.client.config import (
    DEFAULT_BULK_ENDPOINT,
    DEFAULT_ENDPOINT,
    DEFAULT_TIMEOUT_MS,
    ENV_API_KEY,
    ENV_BULK_ENDPOINT,
    ENV_ENDPOINT,
    ENV_TIMEOUT_MS,
    ENV_TLS,
    ENV_TLS_CA,
    ENV_TLS_CERT,
    ENV_TLS_KEY,
    ClientConfig,
)

EPILOG = (
    "Exit codes: 0 done; 1 a call failed (error on stderr, as JSON with --json); 2 bad usage or "
    "configuration; 3 reconcile found a discrepancy; 4 part of the work failed (payments batch)."
)

app = typer.Typer(
    name="jubao",
    help="Operate and try the jubao financial cloud.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(meta.app)
app.add_typer(tenants.app, name="tenants")
app.add_typer(keys.app, name="keys")
app.add_typer(payments.app, name="payments")
app.add_typer(reconcile.app)
app.add_typer(server.app)
app.add_typer(bulk.app, name="bulk")
app.add_typer(fundta.app, name="fundta")
app.add_typer(cocreation_cli.app, name="cocreation")


EndpointOption = Annotated[str, typer.Option(envvar=ENV_ENDPOINT, help="host:port of the service.")]
BulkEndpointOption = Annotated[
    str, typer.Option(envvar=ENV_BULK_ENDPOINT, help="host:port of the bulk (Arrow Flight) server.")
]
ApiKeyOption = Annotated[
    str | None, typer.Option(envvar=ENV_API_KEY, show_default=False, help="Bearer API key; never printed.")
]
TlsOption = Annotated[
    bool, typer.Option("--tls", envvar=ENV_TLS, help="Use TLS verified by the system roots.")
]
CaOption = Annotated[Path | None, typer.Option(envvar=ENV_TLS_CA, help="CA certificate (PEM); implies TLS.")]
CertOption = Annotated[Path | None, typer.Option(envvar=ENV_TLS_CERT, help="Client certificate (PEM), mTLS.")]
KeyOption = Annotated[Path | None, typer.Option(envvar=ENV_TLS_KEY, help="Client private key (PEM), mTLS.")]
TimeoutOption = Annotated[int, typer.Option(envvar=ENV_TIMEOUT_MS, min=1, help="Deadline per call, ms.")]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print responses as proto JSON, errors as JSON on stderr.")
]


@app.callback()
def main(
    ctx: typer.Context,
    *,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    bulk_endpoint: BulkEndpointOption = DEFAULT_BULK_ENDPOINT,
    api_key: ApiKeyOption = None,
    tls: TlsOption = False,
    tls_ca: CaOption = None,
    tls_cert: CertOption = None,
    tls_key: KeyOption = None,
    timeout_ms: TimeoutOption = DEFAULT_TIMEOUT_MS,
    json_output: JsonOption = False,
) -> None:
    """Global options; the JUBAO_* environment variables give their defaults."""
    make_config = functools.partial(
        ClientConfig,
        endpoint=endpoint,
        bulk_endpoint=bulk_endpoint,
        api_key=api_key or None,
        tls=tls,
        root_certificates_path=tls_ca,
        client_certificate_path=tls_cert,
        client_key_path=tls_key,
        default_timeout_ms=timeout_ms,
    )
    ctx.obj = CliState(make_config=make_config, json_output=json_output, bulk_endpoint=bulk_endpoint)
