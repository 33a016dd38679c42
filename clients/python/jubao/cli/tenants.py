"""`jubao tenants ...`: the partner institutions of the platform (TenantAdmin, operators only)."""

from __future__ import annotations

import functools
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from jubao.admin.v1 import tenant_admin_pb2 as admin_pb2
from jubao.cli.common import (
    PAGE_SIZE,
    Page,
    RequestIdOption,
    collect_pages,
    connect,
    emit,
    enum_label,
    list_table,
    record_table,
    time_label,
)

if TYPE_CHECKING:
    from rich.table import Table

    from jubao.client import Client

app = typer.Typer(help="Manage tenants (operator credentials only).", no_args_is_help=True)


class Kind(StrEnum):
    BANK = "bank"
    FUND_HOUSE = "fund_house"
    PLATFORM = "platform"
    OPERATOR = "operator"


class ProductName(StrEnum):
    PAYMENTS = "payments"
    FUND_TA = "fund_ta"
    COCREATION = "cocreation"


TenantIdArgument = Annotated[str, typer.Argument(metavar="ID", help="Tenant id, e.g. acme-bank.")]
RATE_OPTION = typer.Option("--rate", min=1, help="Sustained requests per second.")
BURST_OPTION = typer.Option("--burst", min=1, help="Requests allowed in a burst above the rate.")
CONCURRENCY_OPTION = typer.Option("--concurrency", min=1, help="Calls in flight at once.")
ProductsOption = Annotated[list[ProductName] | None, typer.Option("--product", help="Repeat per product.")]


@app.command("list")
def list_tenants(ctx: typer.Context) -> None:
    """List every tenant."""
    with connect(ctx) as client:
        tenants = collect_pages(functools.partial(_tenant_page, client))
    emit(ctx, admin_pb2.ListTenantsResponse(tenants=tenants), lambda: tenants_table(tenants))


@app.command()
def get(ctx: typer.Context, tenant_id: TenantIdArgument) -> None:
    """Show one tenant."""
    with connect(ctx) as client:
        response = client.admin.GetTenant(admin_pb2.GetTenantRequest(tenant_id=tenant_id))
    emit(ctx, response, lambda: tenant_record(response.tenant))


@app.command()
def create(
    ctx: typer.Context,
    tenant_id: TenantIdArgument,
    *,
    name: Annotated[str, typer.Option("--name", help="Display name.")],
    kind: Annotated[Kind, typer.Option("--kind", help="What kind of institution it is.")],
    products: ProductsOption = None,
    rate: Annotated[int | None, RATE_OPTION] = None,
    burst: Annotated[int | None, BURST_OPTION] = None,
    concurrency: Annotated[int | None, CONCURRENCY_OPTION] = None,
    request_id: RequestIdOption = "",
) -> None:
    """Create a tenant; quota flags left out keep the service's defaults."""
    tenant = admin_pb2.Tenant(
        tenant_id=tenant_id,
        display_name=name,
        kind=admin_pb2.TenantKind.Value(f"TENANT_KIND_{kind.value.upper()}"),
        products=[admin_pb2.Product.Value(f"PRODUCT_{product.value.upper()}") for product in products or ()],
    )
    if (rate, burst, concurrency) != (None, None, None):
        tenant.quota.CopyFrom(_quota(rate or 0, burst or 0, concurrency or 0))
    with connect(ctx) as client:
        response = client.admin.CreateTenant(
            admin_pb2.CreateTenantRequest(tenant=tenant, request_id=request_id)
        )
    emit(ctx, response, lambda: tenant_record(response.tenant))


@app.command()
def disable(
    ctx: typer.Context,
    tenant_id: TenantIdArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why; shown to operators.")],
    request_id: RequestIdOption = "",
) -> None:
    """Disable a tenant: its later calls fail with TENANT_DISABLED."""
    with connect(ctx) as client:
        request = admin_pb2.DisableTenantRequest(tenant_id=tenant_id, reason=reason, request_id=request_id)
        response = client.admin.DisableTenant(request)
    emit(ctx, response, lambda: tenant_record(response.tenant))


@app.command()
def enable(ctx: typer.Context, tenant_id: TenantIdArgument, request_id: RequestIdOption = "") -> None:
    """Enable a disabled tenant again."""
    request = admin_pb2.EnableTenantRequest(tenant_id=tenant_id, request_id=request_id)
    with connect(ctx) as client:
        response = client.admin.EnableTenant(request)
    emit(ctx, response, lambda: tenant_record(response.tenant))


@app.command("set-quota")
def set_quota(
    ctx: typer.Context,
    tenant_id: TenantIdArgument,
    *,
    rate: Annotated[int, RATE_OPTION],
    burst: Annotated[int, BURST_OPTION],
    concurrency: Annotated[int, CONCURRENCY_OPTION],
    request_id: RequestIdOption = "",
) -> None:
    """Replace a tenant's quota."""
    quota = _quota(rate, burst, concurrency)
    request = admin_pb2.UpdateTenantQuotaRequest(tenant_id=tenant_id, quota=quota, request_id=request_id)
    with connect(ctx) as client:
        response = client.admin.UpdateTenantQuota(request)
    emit(ctx, response, lambda: tenant_record(response.tenant))


def _tenant_page(client: Client, page_token: str) -> Page[admin_pb2.Tenant]:
    request = admin_pb2.ListTenantsRequest(page_size=PAGE_SIZE, page_token=page_token)
    response = client.admin.ListTenants(request)
    return response.tenants, response.next_page_token


def _quota(rate: int, burst: int, concurrency: int) -> admin_pb2.Quota:
    return admin_pb2.Quota(requests_per_s=rate, burst_requests=burst, concurrent_calls_max=concurrency)


def _kind(tenant: admin_pb2.Tenant) -> str:
    return enum_label(admin_pb2.TenantKind.Name(tenant.kind), "TENANT_KIND_")


def _products(tenant: admin_pb2.Tenant) -> str:
    return ", ".join(enum_label(admin_pb2.Product.Name(product), "PRODUCT_") for product in tenant.products)


def _state(tenant: admin_pb2.Tenant) -> str:
    return enum_label(admin_pb2.TenantState.Name(tenant.state), "TENANT_STATE_")


def tenants_table(tenants: list[admin_pb2.Tenant]) -> Table:
    headers = ("ID", "NAME", "KIND", "PRODUCTS", "STATE", "RATE/S BURST IN-FLIGHT")
    rows = [
        (
            tenant.tenant_id,
            tenant.display_name,
            _kind(tenant),
            _products(tenant),
            _state(tenant),
            _quota_label(tenant.quota),
        )
        for tenant in tenants
    ]
    return list_table(headers, rows, wrap=(1, 3, 5))


def _quota_label(quota: admin_pb2.Quota) -> str:
    return f"{quota.requests_per_s} {quota.burst_requests} {quota.concurrent_calls_max}"


def tenant_record(tenant: admin_pb2.Tenant) -> Table:
    return record_table(
        [
            ("tenant", tenant.tenant_id),
            ("name", tenant.display_name),
            ("kind", _kind(tenant)),
            ("products", _products(tenant)),
            ("state", _state(tenant)),
            ("disabled reason", tenant.disabled_reason),
            ("requests/s", str(tenant.quota.requests_per_s)),
            ("burst", str(tenant.quota.burst_requests)),
            ("concurrency", str(tenant.quota.concurrent_calls_max)),
            ("created", time_label(tenant.create_time)),
            ("updated", time_label(tenant.update_time)),
            ("version", str(tenant.version)),
        ]
    )
