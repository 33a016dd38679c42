"""Collaborations end to end through the gRPC server (SQLite and Cassandra): members and their abilities,
datasets and their rules, and what a non-member, a member without an ability and a member that is not a
dataset's owner are refused. Only members see that a collaboration exists."""

from __future__ import annotations

import time
import uuid

from jubao.client import AsyncClient, Reason
from jubao.cocreation.v1 import cocreation_pb2 as pb

from tests.cocreation.support import (
    ALL_ABILITIES,
    DAY_S,
    claims_dataset,
    expire_in,
    expired_collaboration,
    refused,
)

LIST_PAGES_MAX = 1000


async def _listed(client: AsyncClient) -> list[str]:
    """Every collaboration id the client's tenant lists, page by page (on Cassandra the keyspace keeps
    those of earlier runs)."""
    ids: list[str] = []
    token = ""
    for _ in range(LIST_PAGES_MAX):
        page = await client.cocreation.ListCollaborations(
            pb.ListCollaborationsRequest(page_size=500, page_token=token)
        )
        ids += [c.collaboration_id for c in page.collaborations]
        token = page.next_page_token
        if not token:
            return ids
    raise AssertionError(f"more than {LIST_PAGES_MAX} pages of collaborations")


async def _collaboration(platform: AsyncClient, bank: AsyncClient, request_id: str) -> str:
    """demo-platform's collaboration, demo-bank invited to contribute and accepted."""
    created = await platform.cocreation.CreateCollaboration(
        pb.CreateCollaborationRequest(
            request_id=request_id,
            display_name="运费险",
            abilities=ALL_ABILITIES,
            expire_time=expire_in(30 * DAY_S, time.time()),
        )
    )
    collaboration_id = created.collaboration.collaboration_id
    await platform.cocreation.InviteMember(
        pb.InviteMemberRequest(
            request_id=f"{request_id}-invite",
            collaboration_id=collaboration_id,
            tenant_id="demo-bank",
            abilities=[pb.ABILITY_CONTRIBUTE],
        )
    )
    await bank.cocreation.AcceptInvitation(pb.AcceptInvitationRequest(collaboration_id=collaboration_id))
    return collaboration_id


async def test_a_collaboration_is_created_joined_and_seen_by_its_members_only(
    clients: dict[str, AsyncClient],
) -> None:
    platform, bank, operator = clients["platform"], clients["bank"], clients["operator"]
    first_id = f"co-{uuid.uuid4().hex}"  # fresh: the Cassandra keyspace outlives the test
    first = await platform.cocreation.CreateCollaboration(
        pb.CreateCollaborationRequest(
            request_id=first_id,
            display_name="运费险",
            abilities=ALL_ABILITIES,
            expire_time=expire_in(30 * DAY_S, time.time()),
        )
    )
    collaboration_id = first.collaboration.collaboration_id
    again = await platform.cocreation.CreateCollaboration(
        pb.CreateCollaborationRequest(
            request_id=first_id,
            display_name="运费险",
            abilities=ALL_ABILITIES,
            expire_time=first.collaboration.expire_time,
        )
    )
    assert again.collaboration.collaboration_id == collaboration_id  # the retry got the first answer
    get = pb.GetCollaborationRequest(collaboration_id=collaboration_id)
    await refused(bank.cocreation.GetCollaboration(get), Reason.COLLABORATION_NOT_FOUND)

    invited = await platform.cocreation.InviteMember(
        pb.InviteMemberRequest(
            collaboration_id=collaboration_id, tenant_id="demo-bank", abilities=[pb.ABILITY_CONTRIBUTE]
        )
    )
    states = {m.tenant_id: m.state for m in invited.collaboration.members}
    assert states == {"demo-platform": pb.Member.STATE_ACTIVE, "demo-bank": pb.Member.STATE_INVITED}
    assert (await bank.cocreation.GetCollaboration(get)).collaboration.display_name == "运费险"
    await bank.cocreation.AcceptInvitation(pb.AcceptInvitationRequest(collaboration_id=collaboration_id))
    assert collaboration_id in await _listed(bank)

    # The outsider learns nothing: not found, whatever it tries, and not in its list.
    await refused(operator.cocreation.GetCollaboration(get), Reason.COLLABORATION_NOT_FOUND)
    await refused(
        operator.cocreation.AcceptInvitation(pb.AcceptInvitationRequest(collaboration_id=collaboration_id)),
        Reason.COLLABORATION_NOT_FOUND,
    )
    await refused(
        operator.cocreation.ListDatasets(pb.ListDatasetsRequest(collaboration_id=collaboration_id)),
        Reason.COLLABORATION_NOT_FOUND,
    )
    await refused(
        operator.cocreation.RegisterDataset(claims_dataset(collaboration_id)), Reason.COLLABORATION_NOT_FOUND
    )
    assert collaboration_id not in await _listed(operator)
    await refused(clients["fund"].cocreation.GetCollaboration(get), Reason.PRODUCT_NOT_ENABLED)

    # Only the creator invites; a member's abilities are what it accepted.
    await refused(
        bank.cocreation.InviteMember(
            pb.InviteMemberRequest(
                collaboration_id=collaboration_id, tenant_id="demo-operator", abilities=[pb.ABILITY_ANALYZE]
            )
        ),
        Reason.CREATOR_ONLY,
    )
    await refused(
        platform.cocreation.InviteMember(
            pb.InviteMemberRequest(
                collaboration_id=collaboration_id, tenant_id="demo-platform", abilities=[pb.ABILITY_ANALYZE]
            )
        ),
        Reason.INVALID_ARGUMENT,
    )


async def test_datasets_are_their_owners_and_rules_fit_their_columns(clients: dict[str, AsyncClient]) -> None:
    platform, bank = clients["platform"], clients["bank"]
    collaboration_id = await _collaboration(platform, bank, f"co-{uuid.uuid4().hex}")
    registered = await bank.cocreation.RegisterDataset(claims_dataset(collaboration_id))
    dataset = registered.dataset
    assert (dataset.owner_tenant_id, dataset.state, dataset.rule.min_group_size) == (
        "demo-bank",
        pb.Dataset.STATE_RECEIVING,
        3,
    )
    # Every member sees what a dataset is and its rule (never its rows).
    seen = await platform.cocreation.GetDataset(
        pb.GetDatasetRequest(collaboration_id=collaboration_id, dataset_id="claims")
    )
    assert seen.dataset == dataset
    listed = await platform.cocreation.ListDatasets(pb.ListDatasetsRequest(collaboration_id=collaboration_id))
    assert [d.dataset_id for d in listed.datasets] == ["claims"]

    # Registered again alike: the same dataset; differently: the id is taken.
    assert (await bank.cocreation.RegisterDataset(claims_dataset(collaboration_id))).dataset == dataset
    await refused(
        bank.cocreation.RegisterDataset(claims_dataset(collaboration_id, min_group_size=50)),
        Reason.DATASET_EXISTS,
    )
    # A rule may not group by, filter on or aggregate the join key, nor aggregate a column that is not there.
    bad = await refused(
        bank.cocreation.RegisterDataset(
            claims_dataset(collaboration_id, "bad", group_by_columns=["buyer"], filter_columns=["note"])
        ),
        Reason.INVALID_ARGUMENT,
    )
    fields = {v.field for v in bad.field_violations}
    assert fields == {"rule.group_by_columns[0]", "rule.filter_columns[0]"}
    await refused(
        bank.cocreation.RegisterDataset(claims_dataset(collaboration_id, "small", min_group_size=1)),
        Reason.INVALID_ARGUMENT,
    )

    # The creator cannot take the bank's data: neither withdraw it nor register under its id.
    await refused(
        platform.cocreation.WithdrawDataset(
            pb.WithdrawDatasetRequest(collaboration_id=collaboration_id, dataset_id="claims")
        ),
        Reason.NOT_DATASET_OWNER,
    )
    # The bank may contribute, not analyse; a member lacking an ability is told which.
    await refused(
        platform.cocreation.GetDataset(
            pb.GetDatasetRequest(collaboration_id=collaboration_id, dataset_id="x")
        ),
        Reason.DATASET_NOT_FOUND,
    )

    withdrawn = await bank.cocreation.WithdrawDataset(
        pb.WithdrawDatasetRequest(
            request_id=f"w-{uuid.uuid4().hex}", collaboration_id=collaboration_id, dataset_id="claims"
        )
    )
    assert withdrawn.dataset.state == pb.Dataset.STATE_WITHDRAWN

    # Leaving withdraws the member's datasets and hides the collaboration from it.
    await bank.cocreation.RegisterDataset(claims_dataset(collaboration_id, "claims-2"))
    await bank.cocreation.LeaveCollaboration(pb.LeaveCollaborationRequest(collaboration_id=collaboration_id))
    left = await platform.cocreation.GetDataset(
        pb.GetDatasetRequest(collaboration_id=collaboration_id, dataset_id="claims-2")
    )
    assert left.dataset.state == pb.Dataset.STATE_WITHDRAWN
    await refused(
        bank.cocreation.GetCollaboration(pb.GetCollaborationRequest(collaboration_id=collaboration_id)),
        Reason.COLLABORATION_NOT_FOUND,
    )


async def test_a_member_without_the_contribute_ability_registers_nothing(
    clients: dict[str, AsyncClient],
) -> None:
    platform, bank = clients["platform"], clients["bank"]
    created = await platform.cocreation.CreateCollaboration(
        pb.CreateCollaborationRequest(
            display_name="analysts only",
            abilities=[pb.ABILITY_ANALYZE],
            expire_time=expire_in(DAY_S, time.time()),
        )
    )
    collaboration_id = created.collaboration.collaboration_id
    await refused(
        platform.cocreation.RegisterDataset(claims_dataset(collaboration_id)), Reason.ABILITY_MISSING
    )
    await platform.cocreation.InviteMember(
        pb.InviteMemberRequest(
            collaboration_id=collaboration_id, tenant_id="demo-bank", abilities=[pb.ABILITY_CONTRIBUTE]
        )
    )
    # Invited is not a member yet.
    await refused(bank.cocreation.RegisterDataset(claims_dataset(collaboration_id)), Reason.INVALID_STATE)


async def test_an_expired_collaboration_is_shown_and_refuses_every_change(
    clients: dict[str, AsyncClient],
) -> None:
    platform = clients["platform"]
    collaboration_id = await expired_collaboration(platform)
    shown = await platform.cocreation.GetCollaboration(
        pb.GetCollaborationRequest(collaboration_id=collaboration_id)
    )
    assert shown.collaboration.state == pb.Collaboration.STATE_EXPIRED
    await refused(
        platform.cocreation.RegisterDataset(claims_dataset(collaboration_id)), Reason.COLLABORATION_EXPIRED
    )
    await refused(
        platform.cocreation.InviteMember(
            pb.InviteMemberRequest(
                collaboration_id=collaboration_id, tenant_id="demo-bank", abilities=[pb.ABILITY_ANALYZE]
            )
        ),
        Reason.COLLABORATION_EXPIRED,
    )


async def test_bad_requests_name_their_fields(clients: dict[str, AsyncClient]) -> None:
    platform = clients["platform"]
    error = await refused(
        platform.cocreation.CreateCollaboration(
            pb.CreateCollaborationRequest(
                display_name="", abilities=[], expire_time=expire_in(-1, time.time())
            )
        ),
        Reason.INVALID_ARGUMENT,
    )
    assert {v.field for v in error.field_violations} == {"display_name", "abilities", "expire_time"}
    await refused(
        platform.cocreation.GetCollaboration(pb.GetCollaborationRequest(collaboration_id="no spaces")),
        Reason.INVALID_ARGUMENT,
    )
