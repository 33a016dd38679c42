"""Helpers of the co-creation tests: requests for a collaboration of the demo platform and the demo bank,
and a dataset of the shipping-return insurance case (运费险)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Sequence
from typing import Any

import pyarrow as pa
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from jubao.client import AsyncClient, JubaoError, Reason
from jubao.cocreation.v1 import cocreation_pb2 as pb
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.storage.contract import StorageBackend
from jubao_server.tenancy.model import Product
from jubao_server.tenancy.store import TenantStore

DAY_S = 24 * 3600
STRING, INT64 = pb.Column.TYPE_STRING, pb.Column.TYPE_INT64
JOIN, DIMENSION, MEASURE, NEVER = (
    pb.Column.ROLE_JOIN_KEY,
    pb.Column.ROLE_DIMENSION,
    pb.Column.ROLE_MEASURE,
    pb.Column.ROLE_NEVER_OUTPUT,
)
ALL_ABILITIES = (pb.ABILITY_CONTRIBUTE, pb.ABILITY_ANALYZE, pb.ABILITY_RECEIVE_RESULTS)


async def refused(call: Awaitable[Any], reason: Reason) -> JubaoError:
    """The error a call fails with, which must have `reason`."""
    with pytest.raises(JubaoError) as caught:
        await call
    assert caught.value.reason == reason, caught.value
    return caught.value


async def grant_cocreation(backend: StorageBackend, tenant_id: str = "demo-bank") -> None:
    """Give a demo tenant the cocreation product (demo-bank, the insurer of these tests, lacks it in the
    catalogue)."""
    await TenantStore(backend, SYSTEM_CLOCK).update_tenant(
        tenant_id, lambda t: dataclasses.replace(t, products=t.products | {Product.COCREATION})
    )


def expire_in(seconds: float, now_s: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMilliseconds(int((now_s + seconds) * 1000))
    return stamp


def registration(
    collaboration_id: str,
    dataset_id: str,
    display_name: str,
    columns: dict[str, tuple[pb.Column.Type.ValueType, pb.Column.Role.ValueType]],
    rule: pb.AnalysisRule,
) -> pb.RegisterDatasetRequest:
    """A dataset's registration: its columns (name -> type and role, in order) and its rule."""
    return pb.RegisterDatasetRequest(
        collaboration_id=collaboration_id,
        dataset_id=dataset_id,
        display_name=display_name,
        columns=[pb.Column(name=name, type=kind, role=role) for name, (kind, role) in columns.items()],
        rule=rule,
    )


async def platform_and_insurer(
    clients: dict[str, AsyncClient], privacy: pb.DifferentialPrivacy | None = None
) -> str:
    """A collaboration of the platform (every ability) and the bank as the insurer (contributes and
    analyses, never receives results); with differential privacy when `privacy` is set."""
    abilities = [pb.ABILITY_CONTRIBUTE, pb.ABILITY_ANALYZE]
    return await platform_with_bank(clients["platform"], clients["bank"], abilities, privacy)


async def platform_with_bank(
    platform: AsyncClient,
    bank: AsyncClient,
    bank_abilities: Sequence[pb.Ability.ValueType],
    privacy: pb.DifferentialPrivacy | None = None,
) -> str:
    """A 运费险 collaboration of the demo platform (every ability) and the demo bank as the insurer, with
    the abilities it is given, accepted (with differential privacy when `privacy` is set); its id."""
    created = await platform.cocreation.CreateCollaboration(
        pb.CreateCollaborationRequest(
            display_name="运费险",
            abilities=ALL_ABILITIES,
            expire_time=expire_in(DAY_S, time.time()),
            differential_privacy=privacy,
        )
    )
    collaboration_id: str = created.collaboration.collaboration_id
    await platform.cocreation.InviteMember(
        pb.InviteMemberRequest(
            collaboration_id=collaboration_id, tenant_id="demo-bank", abilities=bank_abilities
        )
    )
    await bank.cocreation.AcceptInvitation(pb.AcceptInvitationRequest(collaboration_id=collaboration_id))
    return collaboration_id


async def expired_collaboration(creator: AsyncClient) -> str:
    """A collaboration of `creator` alone that has just expired (it lived 1.5 s); its id."""
    created = await creator.cocreation.CreateCollaboration(
        pb.CreateCollaborationRequest(
            display_name="short", abilities=ALL_ABILITIES, expire_time=expire_in(1.5, time.time())
        )
    )
    await asyncio.sleep(1.6)
    return created.collaboration.collaboration_id


def claims_dataset(
    collaboration_id: str, dataset_id: str = "claims", **rule: object
) -> pb.RegisterDatasetRequest:
    """The insurer's policies: the buyer's token, the category, whether a claim was filed and its amount
    (fen), and a note that is never output."""
    columns = [
        pb.Column(name="buyer", type=STRING, role=JOIN),
        pb.Column(name="category", type=STRING, role=DIMENSION),
        pb.Column(name="claimed", type=INT64, role=MEASURE),
        pb.Column(name="claim_minor", type=INT64, role=MEASURE),
        pb.Column(name="note", type=STRING, role=NEVER),
    ]
    allowed = pb.AnalysisRule(
        group_by_columns=["category"],
        filter_columns=["category"],
        aggregates=[
            pb.AllowedAggregate(
                column="claimed", functions=[pb.AGGREGATE_FUNCTION_SUM, pb.AGGREGATE_FUNCTION_AVG]
            ),
            pb.AllowedAggregate(column="claim_minor", functions=[pb.AGGREGATE_FUNCTION_SUM]),
        ],
        min_group_size=3,
    )
    for field, value in rule.items():
        if isinstance(value, list):
            allowed.ClearField(field)  # type: ignore[arg-type]
            getattr(allowed, field).extend(value)
        else:
            setattr(allowed, field, value)
    return pb.RegisterDatasetRequest(
        collaboration_id=collaboration_id,
        dataset_id=dataset_id,
        display_name="Policies and claims",
        columns=columns,
        rule=allowed,
    )


SECRET = b"agreed-out-of-band-0123456789abcdef"
# Buyers per category: toys is one buyer short of the threshold (3), pens exactly at it.
BUYERS = {"shoes": 12, "books": 7, "pens": 3, "toys": 2}
THRESHOLD = 3


def orders() -> pa.Table:
    """The platform's orders: two per buyer, the buyer's past returns on each."""
    rows: dict[str, list[Any]] = {"buyer": [], "category": [], "returns": []}
    number = 0
    for category, buyers in BUYERS.items():
        for _ in range(buyers):
            for order in range(2):
                rows["buyer"].append(f"1380000{number:04d}")
                rows["category"].append(category)
                rows["returns"].append((number + order) % 3)
            number += 1
    return pa.table(rows)


def claims(orders: pa.Table) -> pa.Table:
    """The insurer's policies: one per buyer of the platform plus some the platform never saw; every
    third buyer claimed."""
    buyers = [*sorted(set(orders.column("buyer").to_pylist())), "13999999999", "13999999998"]
    claimed = [1 if i % 3 == 0 else 0 for i in range(len(buyers))]
    return pa.table(
        {
            "buyer": buyers,
            "category": ["policy"] * len(buyers),
            "claimed": claimed,
            "claim_minor": [c * 1500 for c in claimed],
            "note": ["kept private"] * len(buyers),
        }
    )


def shipping_orders_dataset(collaboration_id: str, dataset_id: str = "orders") -> pb.RegisterDatasetRequest:
    """The platform's orders of the synthetic 运费险 case (`jubao.bulk.shipping`): the category may be grouped
    and filtered on, and it, the buyer's past return rate and the seller's rating may train a model."""
    return pb.RegisterDatasetRequest(
        collaboration_id=collaboration_id,
        dataset_id=dataset_id,
        display_name="Orders",
        columns=[
            pb.Column(name="order_id", type=STRING, role=JOIN),
            pb.Column(name="category", type=STRING, role=DIMENSION),
            pb.Column(name="buyer_return_rate_bp", type=INT64, role=MEASURE),
            pb.Column(name="seller_rating", type=INT64, role=MEASURE),
        ],
        rule=pb.AnalysisRule(
            group_by_columns=["category"],
            filter_columns=["category"],
            aggregates=[
                pb.AllowedAggregate(column="buyer_return_rate_bp", functions=[pb.AGGREGATE_FUNCTION_AVG])
            ],
            min_group_size=SHIPPING_THRESHOLD,
            training_columns=["category", "buyer_return_rate_bp", "seller_rating"],
        ),
    )


def shipping_policies_dataset(
    collaboration_id: str, dataset_id: str = "policies", min_group_size: int = 0
) -> pb.RegisterDatasetRequest:
    """The insurer's policies of the synthetic 运费险 case: whether a claim was filed may be averaged and be a
    model's label; the premium may be summed but trains nothing."""
    return pb.RegisterDatasetRequest(
        collaboration_id=collaboration_id,
        dataset_id=dataset_id,
        display_name="Policies",
        columns=[
            pb.Column(name="order_id", type=STRING, role=JOIN),
            pb.Column(name="premium_minor", type=INT64, role=MEASURE),
            pb.Column(name="claimed", type=INT64, role=MEASURE),
            pb.Column(name="claim_minor", type=INT64, role=MEASURE),
        ],
        rule=pb.AnalysisRule(
            aggregates=[
                pb.AllowedAggregate(column="claimed", functions=[pb.AGGREGATE_FUNCTION_AVG]),
                pb.AllowedAggregate(column="premium_minor", functions=[pb.AGGREGATE_FUNCTION_SUM]),
            ],
            min_group_size=min_group_size or SHIPPING_THRESHOLD,
            training_columns=["claimed"],
        ),
    )


SHIPPING_THRESHOLD = 50
