"""Signed configuration bundles (issue 16): which key signs, which keys are trusted.

Dev signs the bundles it exports with its private Ed25519 key; QA and Production hold
only public keys and refuse a bundle that is unsigned, tampered with or signed by a key
they don't trust. `manage.py config_keys NAME` makes a key pair and prints these lines.

- `CONFIG_SIGNING_KEY=name:base64-private-key`: set only where bundles are exported.
- `CONFIG_TRUSTED_KEYS=name:base64-public-key,other:base64-public-key`: every key
  this environment accepts bundles from. During a rotation list the old and the new.
- `CONFIG_ALLOW_UNSIGNED=1`: `import_config --allow-unsigned` may import a legacy
  unsigned bundle (default: on with DEBUG or DEMO_MODE, off otherwise).
- `PORTAL_ENVIRONMENT`: this portal's name in bundle versions (`dev`, `qa`, `prod`).

Keys are checked here, at startup: a malformed one fails with ImproperlyConfigured
naming the variable (never the value) and the fix.
"""

import base64
import binascii
import re

import environ
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "CONFIG_ALLOW_UNSIGNED",
    "CONFIG_SIGNING_KEY",
    "CONFIG_TRUSTED_KEYS",
    "PORTAL_ENVIRONMENT",
]

_env = environ.Env()

_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_FIX = "make one with `manage.py config_keys NAME` and copy the line it prints"


def parse_named_key(variable: str, item: str, *, private: bool) -> tuple[str, str]:
    """Check one `name:base64` key and return (name, base64 key).

    Raises ImproperlyConfigured naming the variable and the fix, never the key.
    """
    name, sep, encoded = item.strip().partition(":")
    if not sep or not _KEY_NAME.fullmatch(name):
        raise ImproperlyConfigured(
            f"{variable}: each key is written name:base64-key, the name being letters, "
            f"digits, '.', '_' or '-' (e.g. dev-2026:...); {_FIX}."
        )
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ImproperlyConfigured(
            f"{variable}: key {name!r} is not a base64 Ed25519 "
            f"{'private' if private else 'public'} key (32 bytes); {_FIX}."
        )
    try:
        if private:
            Ed25519PrivateKey.from_private_bytes(raw)
        else:
            Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ImproperlyConfigured(
            f"{variable}: key {name!r} is not a valid Ed25519 key; {_FIX}."
        ) from None
    return name, encoded.strip()


def _signing_key() -> tuple[str, str] | None:
    value = _env.str("CONFIG_SIGNING_KEY", default="").strip()
    if not value:
        return None
    return parse_named_key("CONFIG_SIGNING_KEY", value, private=True)


def _trusted_keys() -> dict[str, str]:
    keys: dict[str, str] = {}
    for item in _env.list("CONFIG_TRUSTED_KEYS", default=[]):
        if not item.strip():
            continue
        name, encoded = parse_named_key("CONFIG_TRUSTED_KEYS", item, private=False)
        if name in keys:
            raise ImproperlyConfigured(
                f"CONFIG_TRUSTED_KEYS names key {name!r} twice: give each key its own "
                "name (e.g. dev-2026 and dev-2027)."
            )
        keys[name] = encoded
    return keys


# (name, base64 private key) of the key export_config signs with, or None.
CONFIG_SIGNING_KEY = _signing_key()
# name → base64 public key of every key import_config and the admin accept.
CONFIG_TRUSTED_KEYS = _trusted_keys()
CONFIG_ALLOW_UNSIGNED = _env.bool(
    "CONFIG_ALLOW_UNSIGNED",
    default=_env.bool("DEBUG", default=False) or _env.bool("DEMO_MODE", default=False),
)
PORTAL_ENVIRONMENT = _env.str("PORTAL_ENVIRONMENT", default="").strip() or "unnamed"
