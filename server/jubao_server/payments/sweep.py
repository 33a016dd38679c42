"""What a shard does on its own as time passes: holds past their expiry are released, escrows past
their confirmation window are paid to the seller (unless disputed), refund tallies whose window closed
are forgotten; which holds and escrows are open (in memory, for ever) and how long a tally is kept."""

from __future__ import annotations

import hashlib
from typing import Any

from jubao_server import limits
from jubao_server.payments.commands import CloseHold, SettleEscrow
from jubao_server.payments.model import Escrow, EscrowState, Hold, HoldState
from jubao_server.payments.records import RefundTally
from jubao_server.payments.state import ShardState, Stage
from jubao_server.shards.stage import Command

_OPEN_ESCROWS = frozenset({EscrowState.HELD, EscrowState.DISPUTED})


def derived_id(prefix: str, tenant_id: str, text: str) -> str:
    """A stable id for something derived from a request (or another id): every retry names it again."""
    return prefix + hashlib.sha256(f"{tenant_id}\n{text}".encode()).hexdigest()[:32]


def hold_open(hold: Hold) -> bool:
    """Open holds are kept for ever (in memory too); closed and refused ones only for the retries of
    their requests (`request_ttl_s`, in storage)."""
    return hold.state is HoldState.HELD


def escrow_open(escrow: Escrow) -> bool:
    return escrow.state in _OPEN_ESCROWS


def tally_ttl_s(tally: RefundTally, now_ms: int, closed_ttl_s: int) -> int:
    """A refund tally is kept until its refund window ends, then for the retries of its requests."""
    return max(0, tally.expire_time_ms - now_ms) // 1000 + closed_ttl_s


def forget_expired_tallies(state: ShardState, now_ms: int) -> None:
    """Refund tallies whose window has closed: their rows expire, and the owner forgets them."""
    # Strictly before now: a refund applied from now on finds the window closed without its tally.
    expired = [key for key, tally in state.tallies.items() if tally.expire_time_ms < now_ms]
    for key in expired[: limits.sweep_commands_max]:
        del state.tallies[key]


def auto_release(tenant_id: str, escrow_id: str, shard_count: int) -> SettleEscrow:
    """The release of an escrow whose window passed: one transfer id per escrow, however often it runs."""
    transfer_id = derived_id("tr_", tenant_id, f"escrow-release\n{escrow_id}")
    return SettleEscrow(escrow_id, transfer_id, transfer_id, 0, True, shard_count)


def due_commands(
    state: ShardState, tenant_id: str, shard_count: int, now_ms: int
) -> list[Command[Stage, Any]]:
    """Commands for the holds and escrows whose time has come, at most `sweep_commands_max` at a time."""
    commands: list[Command[Stage, Any]] = []
    for hold in state.holds.values():
        if len(commands) >= limits.sweep_commands_max:
            return commands
        if hold.state is HoldState.HELD and hold.expire_time_ms <= now_ms:
            commands.append(CloseHold(hold.hold_id, expired=True))
    for escrow in state.escrows.values():
        if len(commands) >= limits.sweep_commands_max:
            return commands
        if escrow.state is EscrowState.HELD and escrow.release_time_ms <= now_ms:
            commands.append(auto_release(tenant_id, escrow.escrow_id, shard_count))
    return commands
