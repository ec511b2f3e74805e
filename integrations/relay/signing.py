"""Signing relayed commands: HMAC-SHA256 over a canonical JSON of the command.

Why a shared-key MAC and not a public-key signature: only the agent verifies, the
portal already has to keep a secret per agent (the key is stored encrypted with
`EncryptedTextField`), and the agent then needs nothing beyond the standard library.
What the signature buys is that a command the agent runs was written by the portal,
for this agent, unchanged, and not after its expiry: anyone who could forge one would
need the key, and the agent holding it can only send commands to itself.

The format is the agent's (`sagepro_agent.relay.signing`): the portal signs with the
same functions the agent verifies with, so the two cannot drift apart.
"""

import base64
import secrets

from sagepro_agent.relay.signing import SIGNED_FIELDS, canonical, sign

__all__ = ["SIGNED_FIELDS", "canonical", "new_key", "sign"]


def new_key() -> str:
    """A fresh signing key: 32 random bytes, URL-safe base64."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
