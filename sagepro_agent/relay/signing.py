"""Checking the portal's signature on a relayed command: HMAC-SHA256 over a canonical
JSON of the command's fields.

A shared-key MAC because only the agent verifies and the agent then needs nothing
beyond the standard library; the portal keeps the key encrypted. The portal signs with
these same functions (`integrations.relay.signing` imports them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

SIGNED_FIELDS = (
    "id",
    "agent",
    "company",
    "method",
    "path",
    "query",
    "headers",
    "body",
    "body_encoding",
    "idempotency_key",
    "expires_at",
)


def canonical(command: dict[str, Any]) -> bytes:
    """The bytes that are signed: the signed fields as sorted, compact, ASCII JSON."""
    signed = {name: command.get(name) for name in SIGNED_FIELDS}
    return json.dumps(
        signed, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode()


def sign(command: dict[str, Any], key: str) -> str:
    mac = hmac.new(base64.urlsafe_b64decode(key), canonical(command), hashlib.sha256)
    return mac.hexdigest()


def verify(command: dict[str, Any], key: str) -> bool:
    """Whether the command carries the signature `key` gives it (constant time)."""
    signature = command.get("signature")
    if not isinstance(signature, str):
        return False
    try:
        expected = sign(command, key)
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(expected, signature)
