"""Collaborations and datasets as the service asks for them: each call loads the room, checks the caller
against it (`model.py`) and writes the change under the room's version (`store.py`); withdrawn datasets'
rows are deleted once the room says so. The running product (`Cocreation`) holds no state between calls;
it runs one task, the sweep of expired collaborations (every server runs it; its steps are idempotent)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Callable

import structlog
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.cocreation import results
from jubao_server.cocreation.model import (
    Ability,
    AuditEntry,
    Change,
    Collaboration,
    Dataset,
    DatasetState,
    Member,
    MemberState,
    Model,
    ModelSpec,
    Privacy,
    Query,
    Room,
    Spend,
    collaboration_not_found,
    conflict,
)
from jubao_server.cocreation.privacy import Cost, Noise, TrainingNoise, cost_of
from jubao_server.cocreation.query import (
    Plan,
    Result,
    audit_entry,
    check_shape,
    decode_result,
    encode_result,
    plan,
    run,
)
from jubao_server.cocreation.store import CocreationStore
from jubao_server.cocreation.training import Models, model_id_of
from jubao_server.cocreation.training import plan as training_plan
from jubao_server.errors import ApiError, already_exists, invalid
from jubao_server.invariants import ensure
from jubao_server.storage.contract import StorageBackend, StorageError

log = structlog.get_logger("jubao.cocreation")


class Cocreation:
    def __init__(
        self,
        backend: StorageBackend,
        clock: Clock,
        query_threads: int = 1,
        *,
        model_lease_ms: int = limits.cocreation_model_lease_ms_default,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.store = CocreationStore(backend, clock)
        self._query_threads = query_threads
        self._sweeper: asyncio.Task[None] | None = None
        self.models = Models(self.store, clock, query_threads, model_lease_ms)

    def start(self, sweep_s: float) -> None:
        """Sweep expired collaborations every `sweep_s`."""
        self._sweeper = asyncio.create_task(self._sweep_forever(sweep_s), name="cocreation-expiry")

    async def stop(self) -> None:
        await self.models.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def _sweep_forever(self, sweep_s: float) -> None:
        while True:
            try:
                await self.sweep()
            except (StorageError, ApiError) as error:
                log.warning("expiry sweep paused", error=str(error))
            await self.clock.sleep(sweep_s)

    async def sweep(self) -> int:
        """Withdraw the datasets of the collaborations that have expired and delete their rows; the number
        of collaborations swept."""
        now_ms = self.clock.wall_ms()
        due = await self.store.due(now_ms)
        for expire_time_ms, collaboration_id in due:
            try:
                change = await self.store.change(collaboration_id, lambda room: room.expire(now_ms))
            except LookupError:
                change = None  # its creation stopped after the index entry: nothing to sweep
            if change is not None:
                await self._delete_withdrawn(tuple(change.room.datasets.values()))
            await self.store.swept(expire_time_ms, collaboration_id)
        return len(due)

    async def room(self, tenant_id: str, collaboration_id: str, stored: Room | None = None) -> Room:
        """The room (`stored` when the caller has read it), if `tenant_id` may see it (else
        COLLABORATION_NOT_FOUND)."""
        room = stored if stored is not None else await self.store.load(collaboration_id)
        if room is None:
            raise collaboration_not_found(collaboration_id)
        return room.visible(tenant_id)

    async def open_room(self, tenant_id: str, collaboration_id: str, stored: Room | None = None) -> Room:
        """The room for a call on its data: visible to `tenant_id` and not expired."""
        room = await self.room(tenant_id, collaboration_id, stored)
        return room.open_to(tenant_id, self.clock.wall_ms())

    async def create(
        self,
        tenant_id: str,
        request_id: str,
        display_name: str,
        abilities: tuple[Ability, ...],
        expire_time_ms: int,
        *,
        privacy: Privacy | None = None,
    ) -> Room:
        """A new collaboration whose only member is its creator (with differential privacy when `privacy`
        is set). Its id derives from the tenant and the request id, so a retry whose first attempt stored
        it (but not its answer) finds it."""
        now_ms = self.clock.wall_ms()
        collaboration_id = _collaboration_id(tenant_id, request_id)
        collaboration = Collaboration(
            collaboration_id, display_name, tenant_id, now_ms, expire_time_ms, privacy
        )
        creator = Member(tenant_id, abilities, MemberState.ACTIVE, now_ms)
        room = Room(collaboration, {tenant_id: creator}, {}, 1)
        if await self.store.create(room):
            return room
        stored = await self.store.load(collaboration_id, serial=True)
        ensure(stored is not None, "a collaboration that exists can be read")
        ensure(stored is None or stored.collaboration.creator == tenant_id, "ids derive from their creator")
        return stored if stored is not None else room

    async def collaborations(
        self, tenant_id: str, after: str | None, size: int
    ) -> tuple[list[Room], str | None]:
        """The collaborations `tenant_id` sees, by id, after `after`; where the next page starts."""
        ids, next_after = await self.store.memberships(tenant_id, after, size)
        rooms = []
        for collaboration_id in ids:
            room = await self.store.load(collaboration_id)
            if room is not None and room.sees(tenant_id):
                rooms.append(room)
        return rooms, next_after

    async def change(self, tenant_id: str, collaboration_id: str, step: Callable[[Room], Change]) -> Room:
        """Apply a change the caller makes to an open room; delete the rows of the datasets it withdrew."""
        now_ms = self.clock.wall_ms()

        def checked(room: Room) -> Change:
            return step(room.open_to(tenant_id, now_ms))

        try:
            change = await self.store.change(collaboration_id, checked)
        except LookupError:
            raise collaboration_not_found(collaboration_id) from None
        await self._delete_withdrawn(change.datasets)
        return change.room

    async def invite(
        self, tenant_id: str, collaboration_id: str, invitee: str, abilities: tuple[Ability, ...]
    ) -> Room:
        now_ms = self.clock.wall_ms()
        return await self.change(
            tenant_id, collaboration_id, lambda room: room.invite(tenant_id, invitee, abilities, now_ms)
        )

    async def accept(self, tenant_id: str, collaboration_id: str) -> Room:
        now_ms = self.clock.wall_ms()
        return await self.change(tenant_id, collaboration_id, lambda room: room.accept(tenant_id, now_ms))

    async def leave(self, tenant_id: str, collaboration_id: str) -> None:
        now_ms = self.clock.wall_ms()
        await self.change(tenant_id, collaboration_id, lambda room: room.leave(tenant_id, now_ms))

    async def set_privacy(self, tenant_id: str, collaboration_id: str, privacy: Privacy) -> Room:
        return await self.change(
            tenant_id, collaboration_id, lambda room: room.set_privacy(tenant_id, privacy)
        )

    async def register(self, tenant_id: str, dataset: Dataset) -> Dataset:
        room = await self.change(
            tenant_id, dataset.collaboration_id, lambda room: room.register(tenant_id, dataset)
        )
        return room.dataset(dataset.dataset_id)

    async def withdraw(self, tenant_id: str, collaboration_id: str, dataset_id: str) -> Dataset:
        now_ms = self.clock.wall_ms()
        room = await self.change(
            tenant_id, collaboration_id, lambda room: room.withdraw(tenant_id, dataset_id, now_ms)
        )
        dataset = room.dataset(dataset_id)
        # A retry of a withdrawal whose deletion was cut short deletes what is left.
        await self._delete_withdrawn((dataset,))
        return dataset

    async def _checked(
        self,
        tenant_id: str,
        collaboration_id: str,
        query: Query,
        epsilon_micro: int,
        stored: Room | None = None,
    ) -> tuple[Plan, Privacy | None]:
        room = await self.open_room(tenant_id, collaboration_id, stored)
        check_shape(query, room)
        privacy = room.collaboration.privacy
        if privacy is None and epsilon_micro:
            raise invalid("epsilon_micro", "0: the collaboration has no differential privacy")
        return plan(room, tenant_id, query, epsilon_micro), privacy

    async def preview(
        self, tenant_id: str, collaboration_id: str, query: Query, epsilon_micro: int = 0
    ) -> Cost | None:
        """What the query would cost `tenant_id` and what its budget would have left (None without
        differential privacy), or the error the query would fail with; nothing is read or spent."""
        checked, privacy = await self._checked(tenant_id, collaboration_id, query, epsilon_micro)
        if privacy is None or checked.noise is None:
            return None
        return cost_of(privacy, checked.noise, await self.store.spent(collaboration_id, tenant_id))

    async def query(
        self,
        tenant_id: str,
        collaboration_id: str,
        query: Query,
        request_id: str = "",
        epsilon_micro: int = 0,
        *,
        stored: Room | None = None,
    ) -> tuple[Result, Cost | None]:
        """Run an aggregate query for `tenant_id` (see `query.py`) on the room (`stored`, when the caller
        has read it): checked, then read and computed, and recorded in the audit log before it is
        answered. Under differential privacy it is paid from the caller's budget first (`_spent`), once
        per `request_id`, and kept (`keep`) before, if it is too large for a response; with its cost and
        the budget left. Else a result too large for a response is the caller's to keep (`to_keep`)."""
        checked, privacy = await self._checked(tenant_id, collaboration_id, query, epsilon_micro, stored)
        if privacy is not None:
            if not request_id:
                raise invalid("request_id", "required: the collaboration has differential privacy")
            return await self._spent(tenant_id, collaboration_id, checked, privacy, request_id)
        result = await run(self.store, checked, self._query_threads)
        entry = audit_entry(uuid.uuid4().hex, self.clock.wall_ms(), tenant_id, checked, result)
        await self.store.audit(collaboration_id, entry)
        return result, None

    async def _spent(
        self, tenant_id: str, collaboration_id: str, checked: Plan, privacy: Privacy, request_id: str
    ) -> tuple[Result, Cost]:
        """Run a query under differential privacy and pay for it: the budget is checked before any row is
        read, and the spend (with the noised answer) is written on the condition that the budget has
        spent nothing more meanwhile and the request nothing yet. A request that already spent answers what it
        answered then; a budget another query emptied meanwhile refuses (the noised result is never
        released). The audit entry is written after the spend, with the time and id the spend keeps, so
        a retry after a crash between the two writes the same entry."""
        noise = checked.noise
        ensure(noise is not None, "a query under differential privacy is noised")
        spent = await self.store.spent(collaboration_id, tenant_id)
        earlier = await self.store.spend_of(collaboration_id, tenant_id, request_id)
        if earlier is None and noise is not None:
            cost_of(privacy, noise, spent)
            result = await run(self.store, checked, self._query_threads)
            audit_id = hashlib.sha256(f"{tenant_id}\n{request_id}".encode()).hexdigest()[:32]
            entry = audit_entry(audit_id, self.clock.wall_ms(), tenant_id, checked, result)
            if result.to_keep:
                # Kept under a random id before the spend: were the spend refused, nobody could find it.
                result = await self.keep(tenant_id, collaboration_id, result)
            spend = Spend(request_id, noise.epsilon_micro, entry, encode_result(result))
            earlier, spent = await self._pay(
                tenant_id, collaboration_id, privacy=privacy, noise=noise, spend=spend, spent=spent
            )
        if earlier is None or earlier.audit is None:
            raise _reused(request_id)
        await self.store.audit(collaboration_id, earlier.audit)
        remaining = privacy.budget_epsilon_micro - spent
        return decode_result(earlier.answer), Cost(
            earlier.epsilon_micro, privacy.budget_epsilon_micro, remaining
        )

    async def keep(self, tenant_id: str, collaboration_id: str, result: Result) -> Result:
        """Keep a result too large for a response for `tenant_id` to download (`results.py`)."""
        return await results.keep(self.store, tenant_id, collaboration_id, result)

    async def _pay(
        self,
        tenant_id: str,
        collaboration_id: str,
        *,
        privacy: Privacy,
        noise: Noise | TrainingNoise,
        spend: Spend,
        spent: int,
    ) -> tuple[Spend, int]:
        """Write `spend` on the budget that had spent `spent` (one conditional batch), re-checked against
        the new total while other spends win; the spend that holds the request id (`spend`, or the one a
        first attempt wrote) and the total spent. PRIVACY_BUDGET_EXHAUSTED when another spend emptied the
        budget meanwhile."""
        for _ in range(limits.cocreation_spend_attempts_max):
            outcome = await self.store.spend(collaboration_id, tenant_id, spent, spend)
            spent = outcome.spent_epsilon_micro
            if outcome.applied or outcome.earlier is not None:
                return outcome.earlier or spend, spent
            cost_of(privacy, noise, spent)
        raise conflict(collaboration_id)

    async def preview_training(
        self, tenant_id: str, collaboration_id: str, spec: ModelSpec, epsilon_micro: int = 0
    ) -> Cost | None:
        """What training the model would cost `tenant_id` and what its budget would have left (None
        without differential privacy), or the error it would fail with; nothing is read or spent."""
        room = await self.open_room(tenant_id, collaboration_id)
        checked = training_plan(room, tenant_id, spec, epsilon_micro)
        privacy = room.collaboration.privacy
        if privacy is None or checked.noise is None:
            return None
        return cost_of(privacy, checked.noise, await self.store.spent(collaboration_id, tenant_id))

    async def train(
        self, tenant_id: str, collaboration_id: str, request_id: str, spec: ModelSpec, epsilon_micro: int = 0
    ) -> Model:
        """Start training a model for `tenant_id` (see `training.py`), or answer the one a retry started.
        Under differential privacy the training is paid for before its model is stored, once per
        `request_id` (a retry finds the spend naming its model and pays nothing)."""
        room = await self.open_room(tenant_id, collaboration_id)
        checked = training_plan(room, tenant_id, spec, epsilon_micro)
        model_id = model_id_of(tenant_id, request_id)
        privacy = room.collaboration.privacy
        if privacy is not None and checked.noise is not None:
            if not request_id:
                raise invalid("request_id", "required: the collaboration has differential privacy")
            spend = Spend(request_id, checked.noise.epsilon_micro, model_id=model_id)
            earlier = await self.store.spend_of(collaboration_id, tenant_id, request_id)
            if earlier is None:
                spent = await self.store.spent(collaboration_id, tenant_id)
                cost_of(privacy, checked.noise, spent)
                earlier, _ = await self._pay(
                    tenant_id,
                    collaboration_id,
                    privacy=privacy,
                    noise=checked.noise,
                    spend=spend,
                    spent=spent,
                )
            if (earlier.model_id, earlier.epsilon_micro) != (model_id, spend.epsilon_micro):
                raise _reused(request_id)
        return await self.models.start(room, tenant_id, model_id, checked)

    async def model(self, tenant_id: str, collaboration_id: str, model_id: str) -> tuple[Model, bool]:
        """A model of a collaboration `tenant_id` sees, and whether it may receive its fit."""
        room = await self.room(tenant_id, collaboration_id)
        return await self.models.get(room, model_id), _receives(room, tenant_id)

    async def models_page(
        self, tenant_id: str, collaboration_id: str, after: str | None, size: int
    ) -> tuple[list[Model], bool, str | None]:
        """The models of a collaboration `tenant_id` sees, by id after `after`, whether it may receive
        their fits, and where the next page starts (the same visibility as `model`)."""
        room = await self.room(tenant_id, collaboration_id)
        models, next_after = await self.models.page(room, after, size)
        return models, _receives(room, tenant_id), next_after

    async def audit(
        self, tenant_id: str, collaboration_id: str, after: tuple[int, str] | None, size: int
    ) -> tuple[list[AuditEntry], tuple[int, str] | None]:
        """The audit entries `tenant_id` may read (it ran the query, or owns a dataset it read), in time
        order after `after`; where the next page starts."""
        await self.room(tenant_id, collaboration_id)
        entries, next_after = await self.store.audit_page(collaboration_id, after, size)
        return [e for e in entries if e.readable_by(tenant_id)], next_after

    async def _delete_withdrawn(self, datasets: tuple[Dataset, ...]) -> None:
        for dataset in datasets:
            if dataset.state is DatasetState.WITHDRAWN:
                await self.store.delete_rows(dataset.owner, dataset.collaboration_id, dataset.dataset_id)


def _reused(request_id: str) -> ApiError:
    return already_exists(Reason.REQUEST_ID_REUSED, f"request id {request_id} spent on another analysis")


def _receives(room: Room, tenant_id: str) -> bool:
    """Whether `tenant_id` may receive results in the room: an active member with the ability."""
    member = room.members[tenant_id]
    return member.state is MemberState.ACTIVE and Ability.RECEIVE_RESULTS in member.abilities


def _collaboration_id(tenant_id: str, request_id: str) -> str:
    if not request_id:
        return f"co-{uuid.uuid4().hex[:24]}"
    digest = hashlib.sha256(f"{tenant_id}\n{request_id}".encode()).hexdigest()
    return f"co-{digest[:24]}"
