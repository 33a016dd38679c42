"""Who a process is among the shard owners, and where its randomness comes from."""

from __future__ import annotations

import dataclasses
import typing
import uuid
from typing import Final

from jubao_server.errors import HeldElsewhere


class IdSource(typing.Protocol):
    """Fresh ids (32 hex digits): random in production, seeded in the simulator, so that a run with the
    same seed names the same things."""

    def new_id(self) -> str: ...


class RandomIds:
    def new_id(self) -> str:
        return uuid.uuid4().hex


RANDOM_IDS: Final[IdSource] = RandomIds()


@dataclasses.dataclass(frozen=True)
class Node:
    """This process as a shard owner: an id of its own, the address other processes forward calls
    to ("" when it takes none, as in tests and tools), and the addresses of the server processes of
    its machine, itself among them (`members`, set by `jubao-server serve` when it runs one per core;
    empty otherwise), which share each scope's shards out between them (`home`)."""

    node_id: str
    address: str = ""
    members: tuple[str, ...] = ()

    @classmethod
    def local(cls, address: str = "", ids: IdSource = RANDOM_IDS, members: tuple[str, ...] = ()) -> Node:
        return cls(f"node-{ids.new_id()[:16]}", address, members)

    def home(self, shard: int) -> str:
        """The member that takes the shard when nobody holds it: shard `s` goes to member `s mod n`."""
        return self.members[shard % len(self.members)] if self.members else self.address

    @property
    def tag(self) -> str:
        """What the `owner` static column holds."""
        return f"{self.node_id}@{self.address}"


class ShardElsewhere(HeldElsewhere):
    """Another process holds the shard's lease: calls go to it (`address`), or wait until the lease
    runs out when it has none."""

    def __init__(self, shard: int, owner: str, lease_until_ms: int) -> None:
        message = f"shard {shard} is leased by {owner} until {lease_until_ms}"
        super().__init__(message, owner.partition("@")[2])
        self.shard = shard
        self.lease_until_ms = lease_until_ms
