"""Signed bundles: where a bundle comes from, and proof nobody changed it since.

`export_config` seals the configuration it exports with two top-level blocks::

    "origin": {"environment": "dev", "exported_at": "2026-12-06T21:30:00Z",
               "label": "December GL rules", "content_hash": "<sha256 hex>"},
    "signature": {"algorithm": "ed25519", "key": "dev-2026", "value": "<base64>"}

`content_hash` is the SHA-256 of the canonical JSON of the configuration (the bundle
without these two blocks): with the export time and the source environment it makes
the bundle's version. The Ed25519 signature covers the canonical JSON of the whole
bundle except the signature block, so the origin and its label are signed too, and it
names the key that made it. Dev holds the private key (`CONFIG_SIGNING_KEY`); QA and
Production hold public keys only (`CONFIG_TRUSTED_KEYS`, several during a rotation).

Canonical JSON is sorted keys, no whitespace, UTF-8: re-indenting the file or
reordering an object's keys leaves the signature valid, while changing any value or
the order of a list (rules are tried in list order) breaks it. What is verified is the
parsed object that is then planned and applied, never a second reading of the file,
so a trick of the JSON text (a duplicate key, say) can't slip past the check.
"""

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from django.conf import settings

ORIGIN = "origin"
SIGNATURE = "signature"
ALGORITHM = "ed25519"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_MAX_LABEL = 200
_MAX_ENVIRONMENT = 64
_EXPORT_AGAIN = "export it again with export_config"


class SignatureState(StrEnum):
    VERIFIED = "verified"
    UNSIGNED = "unsigned"
    REFUSED = "refused"


def canonical_json(value: object) -> bytes:
    """The bytes a signature and a content hash cover."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def content_of(document: dict) -> dict:
    """The configuration a bundle holds: everything but its origin and signature."""
    return {k: v for k, v in document.items() if k not in (ORIGIN, SIGNATURE)}


def content_hash(content: dict) -> str:
    return hashlib.sha256(canonical_json(content)).hexdigest()


@dataclass(frozen=True)
class Origin:
    """Where and when a bundle was exported; a legacy bundle knows only its hash."""

    content_hash: str
    environment: str = ""
    exported_at: datetime | None = None
    label: str = ""

    @property
    def version(self) -> str:
        """`dev-20261206-213000-3f2a9c1b7d4e`: source, export time, content hash."""
        if self.exported_at is None:
            return f"unversioned-{self.content_hash[:12]}"
        stamp = self.exported_at.strftime("%Y%m%d-%H%M%S")
        return f"{self.environment or 'unnamed'}-{stamp}-{self.content_hash[:12]}"

    def as_json(self) -> dict:
        assert self.exported_at is not None, "only an export has an origin block"
        return {
            "content_hash": self.content_hash,
            "environment": self.environment,
            "exported_at": self.exported_at.strftime(_TIME_FORMAT),
            "label": self.label,
        }


@dataclass(frozen=True)
class Verdict:
    """What the signature check found; `content` is what an import plans and applies."""

    state: SignatureState
    content: dict
    origin: Origin
    key: str = ""
    reason: str = ""

    @property
    def is_signed(self) -> bool:
        return self.state is SignatureState.VERIFIED

    def describe(self) -> str:
        if self.state is SignatureState.VERIFIED:
            return f"Signed by key {self.key!r}, signature verified."
        if self.state is SignatureState.UNSIGNED:
            return "Not signed (a legacy bundle, or exported without a signing key)."
        return f"Refused: {self.reason}"


# Export ---------------------------------------------------------------------------------


def seal_bundle(
    content: dict,
    *,
    label: str = "",
    environment: str | None = None,
    signing_key: tuple[str, str] | None = None,
    now: datetime | None = None,
) -> dict:
    """The exported configuration with its origin and, given a key, its signature.

    `signing_key` is (name, base64 private key), as in `settings.CONFIG_SIGNING_KEY`.
    """
    if len(label) > _MAX_LABEL:
        raise ValueError(f"the label is longer than {_MAX_LABEL} characters")
    exported_at = (now or datetime.now(tz=UTC)).astimezone(UTC).replace(microsecond=0)
    origin = Origin(
        content_hash=content_hash(content),
        environment=(
            settings.PORTAL_ENVIRONMENT if environment is None else environment
        ),
        exported_at=exported_at,
        label=label,
    )
    document = {**content, ORIGIN: origin.as_json()}
    if signing_key is not None:
        name, encoded = signing_key
        private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(encoded))
        document[SIGNATURE] = {
            "algorithm": ALGORITHM,
            "key": name,
            "value": base64.b64encode(private.sign(canonical_json(document))).decode(),
        }
    return document


def origin_of(document: dict) -> Origin:
    """The origin a bundle states (a legacy bundle's: its hash only)."""
    return _read_origin(document.get(ORIGIN), content_hash(content_of(document)))[0]


def public_key_of(encoded_private: str) -> str:
    """The base64 public key of a base64 private key."""
    private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(encoded_private))
    return base64.b64encode(private.public_key().public_bytes_raw()).decode()


def new_key_pair() -> tuple[str, str]:
    """A fresh (base64 private key, base64 public key)."""
    private = Ed25519PrivateKey.generate()
    return (
        base64.b64encode(private.private_bytes_raw()).decode(),
        base64.b64encode(private.public_key().public_bytes_raw()).decode(),
    )


# Import ---------------------------------------------------------------------------------


def check_bundle(document: dict, trusted: Mapping[str, str] | None = None) -> Verdict:
    """Check a parsed bundle's origin and signature against the trusted public keys.

    `trusted` maps key names to base64 public keys (default: CONFIG_TRUSTED_KEYS).
    Never raises for a bad signature: a refusal is a verdict with its reason.
    """
    if trusted is None:
        trusted = settings.CONFIG_TRUSTED_KEYS
    content = content_of(document)
    digest = content_hash(content)
    origin, problem = _read_origin(document.get(ORIGIN), digest)
    if problem:
        return Verdict(SignatureState.REFUSED, content, origin, reason=problem)
    signature = document.get(SIGNATURE)
    if signature is None:
        if origin.content_hash != digest:
            return _refused(
                content,
                origin,
                "the bundle was changed after it was exported (its configuration "
                "no longer matches the hash recorded at export): " + _EXPORT_AGAIN,
            )
        return Verdict(SignatureState.UNSIGNED, content, origin)
    key, value, problem = _read_signature(signature)
    if problem:
        return _refused(content, origin, problem, key=key)
    if key not in trusted:
        return _refused(
            content,
            origin,
            f"the bundle is signed by key {key!r} which this environment does not "
            "trust. If it "
            "should, add its public key to CONFIG_TRUSTED_KEYS (`manage.py "
            "config_keys` printed the line); otherwise export the bundle again where "
            "a trusted key signs it.",
            key=key,
        )
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(trusted[key]))
    signed = {k: v for k, v in document.items() if k != SIGNATURE}
    try:
        public.verify(value, canonical_json(signed))
    except InvalidSignature:
        return _refused(
            content,
            origin,
            f"the bundle was changed after it was signed (or its signature, by key "
            f"{key!r}, belongs to another bundle). Don't edit a signed bundle: change "
            "the configuration in the source environment and " + _EXPORT_AGAIN + ".",
            key=key,
        )
    if origin.content_hash != digest:
        # Signed as it is, yet its hash is wrong: not a bundle export_config sealed.
        return _refused(
            content,
            origin,
            "the bundle's recorded hash does not match its configuration: "
            + _EXPORT_AGAIN,
            key=key,
        )
    return Verdict(SignatureState.VERIFIED, content, origin, key=key)


def _refused(content: dict, origin: Origin, reason: str, *, key: str = "") -> Verdict:
    return Verdict(SignatureState.REFUSED, content, origin, key=key, reason=reason)


def _read_origin(raw: object, digest: str) -> tuple[Origin, str]:
    """The origin block (or a legacy bundle's bare hash), and what is wrong with it."""
    if raw is None:
        return Origin(content_hash=digest), ""
    fields = {"content_hash", "environment", "exported_at", "label"}
    broken = Origin(content_hash=digest)
    if not isinstance(raw, dict) or set(raw) != fields:
        return broken, (
            f"the bundle's origin block is not an object with exactly "
            f"{sorted(fields)}: " + _EXPORT_AGAIN + "."
        )
    if not all(isinstance(raw[name], str) for name in fields):
        return broken, "the bundle's origin block holds a value that is not text: " + (
            _EXPORT_AGAIN + "."
        )
    try:
        exported_at = datetime.strptime(raw["exported_at"], _TIME_FORMAT).replace(
            tzinfo=UTC
        )
    except ValueError:
        return broken, (
            f"the bundle's export time {raw['exported_at'][:40]!r} is not written "
            "YYYY-MM-DDTHH:MM:SSZ: " + _EXPORT_AGAIN + "."
        )
    if len(raw["label"]) > _MAX_LABEL or len(raw["environment"]) > _MAX_ENVIRONMENT:
        return broken, "the bundle's label or environment is too long: " + (
            _EXPORT_AGAIN + "."
        )
    return (
        Origin(
            content_hash=raw["content_hash"],
            environment=raw["environment"],
            exported_at=exported_at,
            label=raw["label"],
        ),
        "",
    )


def _read_signature(raw: object) -> tuple[str, bytes, str]:
    """(key name, signature bytes, what is wrong with the block)."""
    fields = {"algorithm", "key", "value"}
    if not isinstance(raw, dict) or set(raw) != fields:
        return (
            "",
            b"",
            (
                f"the bundle's signature block is not an object with exactly "
                f"{sorted(fields)}: " + _EXPORT_AGAIN + "."
            ),
        )
    key = raw["key"] if isinstance(raw["key"], str) else ""
    if not key or len(key) > 64:
        return "", b"", "the bundle's signature names no key: " + _EXPORT_AGAIN + "."
    if raw["algorithm"] != ALGORITHM:
        return (
            key,
            b"",
            (
                f"the bundle is signed with {str(raw['algorithm'])[:40]!r}; this portal "
                f"accepts {ALGORITHM!r} signatures only: " + _EXPORT_AGAIN + "."
            ),
        )
    try:
        value = base64.b64decode(str(raw["value"]), validate=True)
    except (binascii.Error, ValueError):
        value = b""
    if len(value) != 64:
        return (
            key,
            b"",
            (
                "the bundle's signature value is not a base64 Ed25519 signature: "
                + _EXPORT_AGAIN
                + "."
            ),
        )
    return key, value, ""
