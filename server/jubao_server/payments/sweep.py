"""What a shard does on its own as time passes: holds past their expiry are released, escrows past
their confirmation window are paid to the seller (unless disputed)."""

from __future__ import annotations

import hashlib

from jubao_server import limits
from jubao_server.payments.commands import CloseHold, Command, Record, SettleEscrow
from jubao_server.payments.model import EscrowState, HoldState
from jubao_server.payments.state import ItemKey

ITEM_KINDS = ("hold", "escrow", "refunded")
_CLOSED = {
    HoldState.CAPTURED.value,
    HoldState.VOIDED.value,
    HoldState.EXPIRED.value,
    EscrowState.RELEASED.value,
    EscrowState.REFUNDED.value,
}


def derived_id(prefix: str, tenant_id: str, text: str) -> str:
    """A stable id for something derived from a request (or another id): every retry names it again."""
    return prefix + hashlib.sha256(f"{tenant_id}\n{text}".encode()).hexdigest()[:32]


def item_closed(record: Record) -> bool:
    return record.get("state") in _CLOSED


def item_ttl_s(record: Record, now_ms: int, closed_ttl_s: int) -> int | None:
    """How long an item's row is kept: closed holds and escrows for the retries of their requests, a
    refund tally until its refund window ends (then for the retries too); open items for ever."""
    if item_closed(record):
        return closed_ttl_s
    expire_time_ms = record.get("expire_time_ms")
    if "refunded_minor" in record and isinstance(expire_time_ms, int):
        return max(0, expire_time_ms - now_ms) // 1000 + closed_ttl_s
    return None


def expired_tallies(items: dict[ItemKey, Record], now_ms: int) -> list[ItemKey]:
    """Refund tallies whose window has closed: their rows expire, and the owner forgets them."""
    return [
        key
        for key, record in items.items()
        if key[0] == "refunded" and record.get("expire_time_ms", now_ms + 1) <= now_ms
    ][: limits.sweep_commands_max]


def auto_release(tenant_id: str, escrow_id: str, shard_count: int) -> SettleEscrow:
    """The release of an escrow whose window passed: one transfer id per escrow, however often it runs."""
    transfer_id = derived_id("tr_", tenant_id, f"escrow-release\n{escrow_id}")
    return SettleEscrow(escrow_id, transfer_id, transfer_id, 0, True, shard_count)


def due_commands(
    items: dict[ItemKey, Record], tenant_id: str, shard_count: int, now_ms: int
) -> list[Command]:
    """Commands for the holds and escrows whose time has come, at most `sweep_commands_max` at a time."""
    commands: list[Command] = []
    for (kind, key), record in items.items():
        if len(commands) >= limits.sweep_commands_max:
            break
        if kind == "hold" and record["state"] == HoldState.HELD.value and record["expire_time_ms"] <= now_ms:
            commands.append(CloseHold(key, expired=True))
        elif (
            kind == "escrow"
            and record["state"] == EscrowState.HELD.value
            and record["release_time_ms"] <= now_ms
        ):
            commands.append(auto_release(tenant_id, key, shard_count))
    return commands
