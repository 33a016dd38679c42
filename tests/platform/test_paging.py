"""Page tokens are signed with a secret that every server of one storage shares: a listing started on one
server goes on at another (behind a load balancer), while a token of another storage is refused."""

from __future__ import annotations

from pathlib import Path

import grpc
from jubao.admin.v1 import tenant_admin_pb2 as pb
from jubao.errors import Reason

from tests.platform.errors import expect_error
from tests.platform.harness import bearer, settings_for, start


async def test_servers_of_one_store_accept_each_others_page_tokens(
    tmp_path: Path, keys: dict[str, str]
) -> None:
    operator = bearer(keys["demo-operator"])
    first, second = [await start(settings_for(tmp_path / "shared.db")) for _ in range(2)]
    elsewhere = await start(settings_for(tmp_path / "other.db"))
    try:
        page = await first.admin.ListTenants(pb.ListTenantsRequest(page_size=2), metadata=operator)
        assert page.next_page_token
        following = await second.admin.ListTenants(
            pb.ListTenantsRequest(page_size=2, page_token=page.next_page_token), metadata=operator
        )
        assert following.tenants and following.tenants[0].tenant_id > page.tenants[-1].tenant_id
        await expect_error(
            elsewhere.admin.ListTenants(
                pb.ListTenantsRequest(page_token=page.next_page_token), metadata=operator
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            Reason.INVALID_PAGE_TOKEN,
        )
    finally:
        for running in (first, second, elsewhere):
            await running.close()
