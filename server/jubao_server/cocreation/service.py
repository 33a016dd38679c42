"""jubao.cocreation.v1.CocreationService: collaborations, members and datasets of the caller's tenant. The
pipeline has already checked that the tenant has the cocreation product; mutations are claimed by request
id first (`RequestLog` on `cocreation_requests`) and their first answer is replayed to their retries (a
query only when it has an effect: `RunQuery`)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from jubao.cocreation.v1 import cocreation_pb2 as pb
from jubao.cocreation.v1 import cocreation_pb2_grpc as pb_grpc

from jubao_server.cocreation.convert import (
    audit_position,
    audit_to_pb,
    audit_token,
    checked_ids,
    collaboration_to_pb,
    cost_to_pb,
    create_command,
    dataset_of,
    dataset_to_pb,
    invite_command,
    model_ids,
    model_to_pb,
    privacy_of,
    query_of,
    result_to_pb,
    spec_of,
)
from jubao_server.cocreation.model import id_violations, raise_if_any
from jubao_server.cocreation.rooms import Cocreation
from jubao_server.cocreation.tables import CLAIMS
from jubao_server.platform.context import current_caller
from jubao_server.platform.idempotency import Claim, RequestLog, check_request_id
from jubao_server.platform.paging import PageTokens, page_size
from jubao_server.products import GrpcService, ServiceContext

Context = grpc.aio.ServicerContext[Any, Any]
R = TypeVar("R", bound=Message)


def grpc_services(cocreation: Cocreation, context: ServiceContext) -> list[GrpcService]:
    servicer = CocreationService(cocreation, context.pages)
    add = functools.partial(pb_grpc.add_CocreationServiceServicer_to_server, servicer)
    return [GrpcService(pb.DESCRIPTOR.services_by_name["CocreationService"], add)]


def _tenant_id() -> str:
    return current_caller().tenant.tenant_id


class CocreationService(pb_grpc.CocreationServiceServicer):
    def __init__(self, cocreation: Cocreation, pages: PageTokens) -> None:
        self._co = cocreation
        self._pages = pages
        self._requests = RequestLog(cocreation.backend, cocreation.clock, CLAIMS)

    def _now_ms(self) -> int:
        return self._co.clock.wall_ms()

    async def _once(
        self, method: str, request: Message, response_type: type[R], apply: Callable[[], Awaitable[R]]
    ) -> R:
        async def run(claim: Claim) -> R:
            return await apply()

        return await self._requests.run(_tenant_id(), method, request, response_type, run)

    async def CreateCollaboration(
        self, request: pb.CreateCollaborationRequest, context: Context
    ) -> pb.CreateCollaborationResponse:
        name, abilities, expire_ms, privacy = create_command(request, self._now_ms())

        async def apply() -> pb.CreateCollaborationResponse:
            tenant_id = _tenant_id()
            room = await self._co.create(
                tenant_id, request.request_id, name, abilities, expire_ms, privacy=privacy
            )
            return pb.CreateCollaborationResponse(collaboration=collaboration_to_pb(room, self._now_ms()))

        return await self._once("CreateCollaboration", request, pb.CreateCollaborationResponse, apply)

    async def GetCollaboration(
        self, request: pb.GetCollaborationRequest, context: Context
    ) -> pb.GetCollaborationResponse:
        checked_ids(collaboration_id=request.collaboration_id)
        room = await self._co.room(_tenant_id(), request.collaboration_id)
        return pb.GetCollaborationResponse(collaboration=collaboration_to_pb(room, self._now_ms()))

    async def ListCollaborations(
        self, request: pb.ListCollaborationsRequest, context: Context
    ) -> pb.ListCollaborationsResponse:
        size = page_size(request.page_size)
        tenant_id = _tenant_id()
        query = self._pages.query(tenant_id, request)
        rooms, after = await self._co.collaborations(tenant_id, query.start(), size)
        now_ms = self._now_ms()
        return pb.ListCollaborationsResponse(
            collaborations=[collaboration_to_pb(room, now_ms) for room in rooms],
            next_page_token=query.next(after),
        )

    async def InviteMember(
        self, request: pb.InviteMemberRequest, context: Context
    ) -> pb.InviteMemberResponse:
        tenant_id = _tenant_id()
        invitee, abilities = invite_command(request, tenant_id)

        async def apply() -> pb.InviteMemberResponse:
            room = await self._co.invite(tenant_id, request.collaboration_id, invitee, abilities)
            return pb.InviteMemberResponse(collaboration=collaboration_to_pb(room, self._now_ms()))

        return await self._once("InviteMember", request, pb.InviteMemberResponse, apply)

    async def AcceptInvitation(
        self, request: pb.AcceptInvitationRequest, context: Context
    ) -> pb.AcceptInvitationResponse:
        checked_ids(collaboration_id=request.collaboration_id)

        async def apply() -> pb.AcceptInvitationResponse:
            room = await self._co.accept(_tenant_id(), request.collaboration_id)
            return pb.AcceptInvitationResponse(collaboration=collaboration_to_pb(room, self._now_ms()))

        return await self._once("AcceptInvitation", request, pb.AcceptInvitationResponse, apply)

    async def LeaveCollaboration(
        self, request: pb.LeaveCollaborationRequest, context: Context
    ) -> pb.LeaveCollaborationResponse:
        checked_ids(collaboration_id=request.collaboration_id)

        async def apply() -> pb.LeaveCollaborationResponse:
            await self._co.leave(_tenant_id(), request.collaboration_id)
            return pb.LeaveCollaborationResponse()

        return await self._once("LeaveCollaboration", request, pb.LeaveCollaborationResponse, apply)

    async def RegisterDataset(
        self, request: pb.RegisterDatasetRequest, context: Context
    ) -> pb.RegisterDatasetResponse:
        dataset = dataset_of(request, _tenant_id(), self._now_ms())

        async def apply() -> pb.RegisterDatasetResponse:
            registered = await self._co.register(_tenant_id(), dataset)
            return pb.RegisterDatasetResponse(dataset=dataset_to_pb(registered))

        return await self._once("RegisterDataset", request, pb.RegisterDatasetResponse, apply)

    async def GetDataset(self, request: pb.GetDatasetRequest, context: Context) -> pb.GetDatasetResponse:
        checked_ids(collaboration_id=request.collaboration_id, dataset_id=request.dataset_id)
        room = await self._co.room(_tenant_id(), request.collaboration_id)
        return pb.GetDatasetResponse(dataset=dataset_to_pb(room.dataset(request.dataset_id)))

    async def ListDatasets(
        self, request: pb.ListDatasetsRequest, context: Context
    ) -> pb.ListDatasetsResponse:
        checked_ids(collaboration_id=request.collaboration_id)
        size = page_size(request.page_size)
        tenant_id = _tenant_id()
        query = self._pages.query(tenant_id, request)
        after = query.start()
        room = await self._co.room(tenant_id, request.collaboration_id)
        listed = sorted(d for d in room.datasets if after is None or d > after)
        page = listed[:size]
        return pb.ListDatasetsResponse(
            datasets=[dataset_to_pb(room.datasets[d]) for d in page],
            next_page_token=query.next(page[-1] if len(listed) > size else None),
        )

    async def WithdrawDataset(
        self, request: pb.WithdrawDatasetRequest, context: Context
    ) -> pb.WithdrawDatasetResponse:
        checked_ids(collaboration_id=request.collaboration_id, dataset_id=request.dataset_id)

        async def apply() -> pb.WithdrawDatasetResponse:
            dataset = await self._co.withdraw(_tenant_id(), request.collaboration_id, request.dataset_id)
            return pb.WithdrawDatasetResponse(dataset=dataset_to_pb(dataset))

        return await self._once("WithdrawDataset", request, pb.WithdrawDatasetResponse, apply)

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: Context
    ) -> pb.ListAuditEntriesResponse:
        checked_ids(collaboration_id=request.collaboration_id)
        size = page_size(request.page_size)
        tenant_id = _tenant_id()
        query = self._pages.query(tenant_id, request)
        entries, after = await self._co.audit(
            tenant_id, request.collaboration_id, audit_position(query.start()), size
        )
        return pb.ListAuditEntriesResponse(
            entries=[audit_to_pb(entry) for entry in entries], next_page_token=query.next(audit_token(after))
        )

    async def SetDifferentialPrivacy(
        self, request: pb.SetDifferentialPrivacyRequest, context: Context
    ) -> pb.SetDifferentialPrivacyResponse:
        violations = id_violations("collaboration_id", request.collaboration_id)
        privacy = privacy_of(request.differential_privacy, violations)
        raise_if_any(violations)

        async def apply() -> pb.SetDifferentialPrivacyResponse:
            room = await self._co.set_privacy(_tenant_id(), request.collaboration_id, privacy)
            return pb.SetDifferentialPrivacyResponse(collaboration=collaboration_to_pb(room, self._now_ms()))

        return await self._once("SetDifferentialPrivacy", request, pb.SetDifferentialPrivacyResponse, apply)

    async def RunQuery(self, request: pb.RunQueryRequest, context: Context) -> pb.RunQueryResponse:
        """A query's request id is claimed only when the query has an effect to apply once: under
        differential privacy (the spend: claimed first, as every mutation is) and when its result is kept
        (claimed once the result is known to be too large: its retry answers the first ticket). A query
        answered in full by its response reads and writes nothing else: its retry runs it again."""
        query = query_of(request)
        check_request_id(request.request_id)
        tenant_id = _tenant_id()
        collaboration_id = request.collaboration_id
        if request.validate_only:
            cost = await self._co.preview(tenant_id, collaboration_id, query, request.epsilon_micro)
            return pb.RunQueryResponse(privacy_cost=cost_to_pb(cost))
        stored = await self._co.store.load(collaboration_id)
        if stored is not None and stored.collaboration.privacy is not None:

            async def spend() -> pb.RunQueryResponse:
                result, cost = await self._co.query(
                    tenant_id, collaboration_id, query, request.request_id, request.epsilon_micro
                )
                return pb.RunQueryResponse(result=result_to_pb(result), privacy_cost=cost_to_pb(cost))

            return await self._once("RunQuery", request, pb.RunQueryResponse, spend)
        result, cost = await self._co.query(
            tenant_id, collaboration_id, query, request.request_id, request.epsilon_micro, stored=stored
        )
        if not result.to_keep:
            return pb.RunQueryResponse(result=result_to_pb(result), privacy_cost=cost_to_pb(cost))

        async def keep() -> pb.RunQueryResponse:
            kept = await self._co.keep(tenant_id, collaboration_id, result)
            return pb.RunQueryResponse(result=result_to_pb(kept), privacy_cost=cost_to_pb(cost))

        return await self._once("RunQuery", request, pb.RunQueryResponse, keep)

    async def StartTraining(
        self, request: pb.StartTrainingRequest, context: Context
    ) -> pb.StartTrainingResponse:
        spec = spec_of(request)
        tenant_id = _tenant_id()
        collaboration_id = request.collaboration_id
        if request.validate_only:
            cost = await self._co.preview_training(tenant_id, collaboration_id, spec, request.epsilon_micro)
            return pb.StartTrainingResponse(privacy_cost=cost_to_pb(cost))
        model = await self._co.train(
            tenant_id, collaboration_id, request.request_id, spec, request.epsilon_micro
        )
        return pb.StartTrainingResponse(model=model_to_pb(model, receives=True))

    async def GetModel(self, request: pb.GetModelRequest, context: Context) -> pb.GetModelResponse:
        collaboration_id, model_id = model_ids(request.name)
        model, receives = await self._co.model(_tenant_id(), collaboration_id, model_id)
        return pb.GetModelResponse(model=model_to_pb(model, receives))

    async def ListModels(self, request: pb.ListModelsRequest, context: Context) -> pb.ListModelsResponse:
        checked_ids(collaboration_id=request.collaboration_id)
        size = page_size(request.page_size)
        tenant_id = _tenant_id()
        query = self._pages.query(tenant_id, request)
        models, receives, after = await self._co.models_page(
            tenant_id, request.collaboration_id, query.start(), size
        )
        return pb.ListModelsResponse(
            models=[model_to_pb(model, receives) for model in models], next_page_token=query.next(after)
        )
