"""API keys: `jbk.<tenant_id>.<key_id>.<secret>`. The tenant and key id are public; the store keeps only
the SHA-256 of the whole key. A key carries 256 random bits, so a fast hash is the right one: a slow
password hash protects low-entropy secrets, which these are not."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets

from jubao_server.tenancy.model import TENANT_ID_PATTERN

KEY_PREFIX = "jbk"
KEY_ID_BYTES = 6
SECRET_BYTES = 32
KEY_LENGTH_MAX = 200


@dataclasses.dataclass(frozen=True)
class PresentedKey:
    tenant_id: str
    key_id: str
    secret_sha256: str


def new_key(tenant_id: str) -> tuple[str, str]:
    """A fresh (key_id, full key)."""
    key_id = secrets.token_hex(KEY_ID_BYTES)
    return key_id, f"{KEY_PREFIX}.{tenant_id}.{key_id}.{secrets.token_urlsafe(SECRET_BYTES)}"


def secret_sha256(full_key: str) -> str:
    return hashlib.sha256(full_key.encode()).hexdigest()


def parse_key(full_key: str) -> PresentedKey | None:
    """Split a presented key; None when it is not shaped like one of ours."""
    if len(full_key) > KEY_LENGTH_MAX:
        return None
    parts = full_key.split(".")
    if len(parts) != 4 or parts[0] != KEY_PREFIX or not TENANT_ID_PATTERN.match(parts[1]):
        return None
    if len(parts[2]) != 2 * KEY_ID_BYTES or not parts[3]:
        return None
    return PresentedKey(parts[1], parts[2], secret_sha256(full_key))


def hashes_match(stored: str, presented: str) -> bool:
    return hmac.compare_digest(stored.encode(), presented.encode())
