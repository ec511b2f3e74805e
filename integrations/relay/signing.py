"""Signing relayed commands: HMAC-SHA256 over a canonical JSON of the command.

Why a shared-key MAC and not a public-key signature: only the agent verifies, the
portal already has to keep a secret per agent (the key is stored encrypted with
`EncryptedTextField`), and the agent then needs nothing beyond the standard library.
What the signature buys is that a command the agent runs was written by the portal,
for this agent, unchanged, and not after its expiry: anyone who could forge one would
need the key, and the agent holding it can only send commands to itself.

The agent has its own copy of these three functions (`sagepro_agent.relay.signing`):
the two programs share the format, not code. A test checks they agree.
"""

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

# The fields a signature covers, in the command the agent receives.
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


def new_key() -> str:
    """A fresh signing key: 32 random bytes, URL-safe base64."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def canonical(command: dict[str, Any]) -> bytes:
    """The bytes that are signed: the signed fields as sorted, compact, ASCII JSON."""
    signed = {name: command.get(name) for name in SIGNED_FIELDS}
    return json.dumps(
        signed, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode()


def sign(command: dict[str, Any], key: str) -> str:
    mac = hmac.new(base64.urlsafe_b64decode(key), canonical(command), hashlib.sha256)
    return mac.hexdigest()
