import hashlib
import hmac
import secrets
import time
from base64 import b32encode
from binascii import unhexlify
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import quote, urlencode

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone
from django_otp.models import Device, ThrottlingMixin, TimestampMixin
from django_otp.oath import TOTP

from integrations.crypto import EncryptedTextField
from portal import tokens
from portal.tokens import Scope, TokenError

PREFIX_LENGTH = 8
KEY_BYTES = 20

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def utc_text(when: datetime) -> str:
    """`2026-03-04 12:00 UTC`: how API refusals name a time (callers run anywhere)."""
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


class ApiTokenManager(models.Manager["ApiToken"]):
    def create_token(
        self,
        user: "User",
        name: str = "",
        scopes: list[str] | None = None,
        lifetime: timedelta | None = None,
    ) -> tuple["ApiToken", str]:
        """Make a token for `user`; return the row and the key, which is shown once.

        Without `scopes`, the token gets every scope the user's permissions give
        something to do today (`portal.tokens.scopes_for`); without `lifetime`, the
        default lifetime (API_TOKEN_LIFETIME_DAYS).
        """
        chosen = tokens.scopes_for(user) if scopes is None else scopes
        token = self.model(user=user, name=name, scopes=list(chosen))
        key = token.issue(lifetime)
        return token, key

    def find(self, key: str) -> "ApiToken | None":
        """The token whose key is `key` (whatever its state), or None."""
        if len(key) != 2 * KEY_BYTES or not key.isascii() or not key.isalnum():
            return None
        digest = digest_of(key)
        for token in self.filter(prefix=key[:PREFIX_LENGTH]).select_related("user"):
            if hmac.compare_digest(token.digest, digest):
                return token
        return None

    def rotate(
        self, token_pk: int, lifetime: timedelta | None = None
    ) -> tuple["ApiToken", str]:
        """Replace token `token_pk`'s key: return the new token and its key.

        The old key keeps working for the rotation overlap (the setting
        API_TOKEN_ROTATION_OVERLAP_HOURS), then is refused. A token is rotated once: a second rotation (two
        clicks, two people at once) is refused, so exactly one new key exists. On
        PostgreSQL the row lock makes the second wait and then see the first; on
        SQLite, where there is no row lock, the unique `rotated_from` refuses it.
        """
        try:
            with transaction.atomic():
                # Lock the token's row only, not its owner's.
                rows = self.select_for_update(of=("self",)).select_related("user")
                old = rows.get(pk=token_pk)
                return old.replace_key(lifetime)
        except IntegrityError:
            raise TokenError(
                "This token was rotated a moment ago by someone else; use the new key "
                "shown to them, or rotate the new token."
            ) from None


class ApiToken(models.Model):
    """An API key, stored as its SHA-256 digest: the key itself is never kept.

    Keys are 160 random bits, so an unsalted fast hash is enough: there is nothing to
    guess from the digest, and a database leak yields no usable key.

    A key works until `expires_at`, unless revoked. Rotating makes a new token (the
    old one's `successor`) with the same owner, name and scopes, and moves the old
    one's `expires_at` to the end of the overlap. Rows are never deleted from the
    admin: an expired or revoked token stays, marked, for the audit trail.
    """

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRING_SOON = "expiring_soon", "Expiring soon"
        ROTATING = "rotating", "Rotated: old key still works"
        REPLACED = "replaced", "Rotated: old key refused"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True, help_text="What it is for.")
    prefix = models.CharField(max_length=PREFIX_LENGTH, db_index=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(
        default=list,
        blank=True,
        help_text="What the key may do (portal.tokens.Scope values); its user's "
        "permissions still apply.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(
        default=tokens.default_expiry,
        editable=False,
        help_text="The key is refused from this moment on.",
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    rotated_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When a new key replaced this one (the old key works until "
        "expires_at).",
    )
    # Unique (one-to-one): a token has at most one successor, whatever the race.
    rotated_from = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="successor",
    )

    objects = ApiTokenManager()

    class Meta:
        verbose_name = "API token"
        permissions = [
            ("manage_all_apitoken", "Can see and manage every user's API tokens")
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    def save(self, *args: object, **kwargs: object) -> None:
        # The name is typed by a person: a card number in it is masked like any other
        # stored text, and a character no column takes is escaped.
        from integrations.models.storage import storable_text

        self.name = storable_text(self.name)
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def set_new_key(self) -> str:
        """Give the token a new random key (not saved); return the key."""
        key = secrets.token_hex(KEY_BYTES)
        self.prefix, self.digest = key[:PREFIX_LENGTH], digest_of(key)
        return key

    def issue(self, lifetime: timedelta | None = None) -> str:
        """Save this new token with a fresh key that lives `lifetime` (the default
        lifetime when None); record it in the access audit log; return the key."""
        if self.scopes and set(self.scopes) - set(Scope.values):
            raise TokenError(
                f"Unknown scope in {self.scopes}; choose from {', '.join(Scope.values)}."
            )
        span = tokens.check_lifetime(lifetime or tokens.default_lifetime())
        key = self.set_new_key()
        self.expires_at = timezone.now() + span
        self.save(force_insert=True)
        self.record(AccessAuditEntry.Kind.TOKEN_CREATED, f"scopes {self.scopes_text()}")
        return key

    def replace_key(self, lifetime: timedelta | None = None) -> tuple["ApiToken", str]:
        """Make this token's successor (call with the row locked: see `rotate`)."""
        now = timezone.now()
        problem = self.rotation_problem(now)
        if problem:
            raise TokenError(problem)
        span = tokens.check_lifetime(lifetime or tokens.default_lifetime())
        new = ApiToken(
            user=self.user, name=self.name, scopes=self.scopes, rotated_from=self
        )
        key = new.set_new_key()
        new.expires_at = now + span
        new.save(force_insert=True)
        self.rotated_at = now
        self.expires_at = min(self.expires_at, now + tokens.rotation_overlap())
        self.save(update_fields=["rotated_at", "expires_at"])
        self.record(
            AccessAuditEntry.Kind.TOKEN_ROTATED,
            f"new key {new.prefix}…; the old key works until {utc_text(self.expires_at)}",
        )
        return new, key

    def revoke(self) -> None:
        """Refuse this token's key from now on (kept, marked, for the audit trail)."""
        now = timezone.now()
        # One UPDATE that only an unrevoked row matches: two people revoking at once
        # make one revocation and one audit entry.
        changed = ApiToken.objects.filter(pk=self.pk, revoked_at__isnull=True).update(
            revoked_at=now
        )
        if not changed:
            raise TokenError(f"Token {self.prefix}… was revoked already.")
        self.revoked_at = now
        self.record(AccessAuditEntry.Kind.TOKEN_REVOKED)

    def record(self, kind: str, detail: str = "") -> None:
        from portal import audit

        text = f"token {self.prefix}…" + (f" ({self.name})" if self.name else "")
        audit.record(
            kind, self.user.get_username(), f"{text}: {detail}" if detail else text
        )

    def state(self, now: datetime | None = None) -> "ApiToken.State":
        now = now or timezone.now()
        if self.revoked_at is not None:
            return self.State.REVOKED
        if self.rotated_at is not None:
            return self.State.ROTATING if now < self.expires_at else self.State.REPLACED
        if now >= self.expires_at:
            return self.State.EXPIRED
        if self.expires_at - now <= tokens.expiring_soon():
            return self.State.EXPIRING_SOON
        return self.State.ACTIVE

    def refusal(self, now: datetime | None = None) -> str:
        """Why this key is refused now, for its caller ("" when it works).

        Says only what the key's holder needs to act on: no owner, scope or successor.
        """
        now = now or timezone.now()
        if self.revoked_at is not None:
            return (
                f"This token was revoked on {utc_text(self.revoked_at)}; ask the "
                "portal's administrator for a new one."
            )
        if now < self.expires_at:
            return ""
        if self.rotated_at is not None:
            return (
                f"This token was rotated; the old key stopped working on "
                f"{utc_text(self.expires_at)}. Use the new key."
            )
        return (
            f"This token expired on {utc_text(self.expires_at)}; ask for a new one "
            "(and next time rotate it before it expires)."
        )

    def rotation_problem(self, now: datetime) -> str:
        """Why this token cannot be rotated now ("" when it can)."""
        if self.revoked_at is not None:
            return f"Token {self.prefix}… is revoked; make a new token instead."
        if self.rotated_at is not None:
            return (
                f"Token {self.prefix}… was rotated already, on "
                f"{utc_text(self.rotated_at)}; rotate its new token instead."
            )
        if now >= self.expires_at:
            return f"Token {self.prefix}… has expired; make a new token instead."
        return ""

    @classmethod
    def in_state(cls, state: str, now: datetime | None = None) -> Q:
        """The rows `state()` puts in `state`, as a query (for the list's filter)."""
        now = now or timezone.now()
        live = Q(revoked_at__isnull=True)
        fresh = live & Q(rotated_at__isnull=True)
        soon = now + tokens.expiring_soon()
        queries: dict[str, Q] = {
            cls.State.REVOKED: Q(revoked_at__isnull=False),
            cls.State.ROTATING: live & Q(rotated_at__isnull=False, expires_at__gt=now),
            cls.State.REPLACED: live & Q(rotated_at__isnull=False, expires_at__lte=now),
            cls.State.EXPIRED: fresh & Q(expires_at__lte=now),
            cls.State.EXPIRING_SOON: fresh
            & Q(expires_at__gt=now, expires_at__lte=soon),
            cls.State.ACTIVE: fresh & Q(expires_at__gt=soon),
        }
        return queries.get(state, Q(pk__in=[]))

    def allows(self, scope: str) -> bool:
        return scope in self.scopes

    def scopes_text(self) -> str:
        return ", ".join(self.scopes) or "none"


class AccessAuditEntry(models.Model):
    """Who signed in (or failed to), and whose roles or permissions changed, by whom.

    Written by `portal.audit` from Django's sign-in signals and from changes to users'
    groups, permissions and flags; never edited or deleted from the admin. A failed
    sign-in keeps the name that was typed, never the password.
    """

    class Kind(models.TextChoices):
        SIGNED_IN = "signed_in", "Signed in"
        SIGN_IN_FAILED = "sign_in_failed", "Sign-in failed"
        SIGNED_OUT = "signed_out", "Signed out"
        GROUPS_CHANGED = "groups_changed", "Roles changed"
        PERMISSIONS_CHANGED = "permissions_changed", "Permissions changed"
        ROLE_PERMISSIONS_CHANGED = (
            "role_permissions_changed",
            "A role's permissions changed",
        )
        FLAGS_CHANGED = "flags_changed", "Staff, superuser or active flag changed"
        # Issue 16: two-factor sign-in, lockout and API tokens.
        TWO_FACTOR_ENROLLED = "two_factor_enrolled", "Two-factor device added"
        TWO_FACTOR_FAILED = "two_factor_failed", "Two-factor code refused"
        TWO_FACTOR_REMOVED = "two_factor_removed", "Two-factor reset"
        RECOVERY_CODES_MADE = "recovery_codes_made", "Recovery codes made"
        RECOVERY_CODE_USED = "recovery_code_used", "Recovery code used"
        LOCKED_OUT = "locked_out", "Locked out"
        UNLOCKED = "unlocked", "Lockout lifted"
        TOKEN_CREATED = "token_created", "API token created"
        TOKEN_ROTATED = "token_rotated", "API token rotated"
        TOKEN_REVOKED = "token_revoked", "API token revoked"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=30, choices=Kind.choices, db_index=True)
    username = models.CharField(
        max_length=150, blank=True, help_text="Whose sign-in or whose account changed."
    )
    actor = models.CharField(
        max_length=150, blank=True, help_text="Who made the change (empty: the system)."
    )
    detail = models.TextField(blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-at"]
        verbose_name = "access audit entry"
        verbose_name_plural = "access audit log"

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.username} ({self.at:%Y-%m-%d %H:%M})"


# --- Two-factor devices (issue 16) ----------------------------------------------------
# The portal's own django-otp devices, used by portal/two_factor instead of otp_totp's
# TOTPDevice and otp_static's StaticDevice, which keep the TOTP seed as plain hex and
# recovery codes as plain text. django-otp finds them like its own devices
# (`devices_for_user`, `verify_token`, the session's `otp_device_id`). They have no admin
# page on purpose: only the two-factor pages show a seed (while it is being set up) or
# recovery codes (once, when made), and nothing shows them after that.

TOTP_SEED_BYTES = 20  # 160 bits, the length RFC 4226 recommends
RECOVERY_CODE_BYTES = 10  # 80 bits: 16 base32 characters


# The django-otp base classes carry no types, so mypy's Django plugin cannot tell what
# these fields hold; the annotations say it.
SmallInt: TypeAlias = "models.SmallIntegerField[int, int]"
BigInt: TypeAlias = "models.BigIntegerField[int, int]"


def new_totp_seed() -> str:
    return secrets.token_hex(TOTP_SEED_BYTES)


class AuthenticatorDevice(TimestampMixin, ThrottlingMixin, Device):
    """An authenticator app: the TOTP seed it shares with the portal, encrypted at rest.

    Anyone holding the seed can make this person's codes, so `key` is Fernet ciphertext
    in the database (`integrations.crypto`; a FIELD_ENCRYPTION_KEYS rotation covers it as
    it covers connection passwords). Codes are checked as django-otp's TOTPDevice checks
    them: `django_otp.oath.TOTP`, `tolerance` steps either side of now, the app's clock
    drift learnt from its last code, and `last_t` so that no code works twice.
    """

    key = EncryptedTextField(
        default=new_totp_seed, editable=False, help_text="The TOTP seed, as hex."
    )
    step: SmallInt = models.PositiveSmallIntegerField(
        default=30, help_text="Seconds each code lasts."
    )
    t0: BigInt = models.BigIntegerField(
        default=0, help_text="The Unix time at which steps start."
    )
    digits: SmallInt = models.PositiveSmallIntegerField(default=6)
    tolerance: SmallInt = models.PositiveSmallIntegerField(
        default=1, help_text="Steps before or after now whose code is still taken."
    )
    drift: SmallInt = models.SmallIntegerField(
        default=0, help_text="Steps the app's clock is known to be off by."
    )
    last_t: BigInt = models.BigIntegerField(
        default=-1,
        help_text="The step of the last code taken; only a later step's code works.",
    )

    class Meta(Device.Meta):
        verbose_name = "authenticator app"

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"

    @property
    def bin_key(self) -> bytes:
        return unhexlify(self.key.encode())

    @property
    def config_url(self) -> str:
        """The otpauth:// address the set-up QR code holds (Key Uri Format)."""
        label = self.user.get_username()
        params = urlencode(
            {
                "secret": b32encode(self.bin_key).decode(),
                "algorithm": "SHA1",
                "digits": self.digits,
                "period": self.step,
            }
        )
        issuer = str(getattr(settings, "OTP_TOTP_ISSUER", "")).replace(":", "")
        if issuer:
            label = f"{issuer}:{label}"
            # RFC 3986 encoding (%20), as authenticator apps expect, not quote_plus.
            params += f"&issuer={quote(issuer)}"
        return f"otpauth://totp/{quote(label)}?{params}"

    def get_throttle_factor(self) -> int:
        return int(getattr(settings, "OTP_TOTP_THROTTLE_FACTOR", 1))

    def verify_token(self, token: object) -> bool:
        """Take `token` if it is the app's code for now, as TOTPDevice.verify_token."""
        allowed, _ = self.verify_is_allowed()
        if not allowed:
            return False
        try:
            number = int(str(token))
        except ValueError:
            number = None
        totp = TOTP(self.bin_key, self.step, self.t0, self.digits, self.drift)
        totp.time = time.time()
        if number is None or not totp.verify(number, self.tolerance, self.last_t + 1):
            self.throttle_increment(commit=True)
            return False
        self.last_t = totp.t()
        if getattr(settings, "OTP_TOTP_SYNC", True):
            self.drift = totp.drift
        self.throttle_reset(commit=False)
        self.set_last_used_timestamp(commit=False)
        # Saving re-encrypts the seed with the first key: rotation finishes by itself.
        self.save()
        return True


def new_recovery_code() -> str:
    """Sixteen random base32 letters and digits, in groups of four (`abcd-efgh-…`)."""
    text = b32encode(secrets.token_bytes(RECOVERY_CODE_BYTES)).decode().lower()
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def recovery_code_digest(code: str) -> str:
    """The digest kept for `code`, however it was typed (case, spaces, hyphens)."""
    return digest_of("".join(code.split()).replace("-", "").lower())


class RecoveryDevice(TimestampMixin, ThrottlingMixin, Device):
    """A person's recovery codes: each signs in once instead of the app.

    Only each code's SHA-256 digest is kept (`RecoveryCode`). A code is 80 random bits,
    so an unsalted fast hash is enough, as for API keys: trying every code against a
    leaked digest would take billions of years, and a slow password hash would only
    make each sign-in slower.
    """

    class Meta(Device.Meta):
        verbose_name = "recovery codes"
        verbose_name_plural = "recovery codes"

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"

    def get_throttle_factor(self) -> int:
        return int(getattr(settings, "OTP_STATIC_THROTTLE_FACTOR", 1))

    def add_codes(self, count: int) -> list[str]:
        """Make `count` new codes on this device; return them (the only time they
        exist in clear)."""
        codes = [new_recovery_code() for _ in range(count)]
        RecoveryCode.objects.bulk_create(
            RecoveryCode(device=self, digest=recovery_code_digest(code))
            for code in codes
        )
        return codes

    def verify_token(self, token: object) -> bool:
        """Take `token` if it is one of the unused codes, and spend it."""
        allowed, _ = self.verify_is_allowed()
        if not allowed:
            return False
        match = self.matching_code(str(token))
        if match is None:
            self.throttle_increment(commit=True)
            return False
        match.delete()
        self.throttle_reset(commit=False)
        self.set_last_used_timestamp(commit=False)
        self.save()
        return True

    def matching_code(self, token: str) -> "RecoveryCode | None":
        """The unused code `token` is, compared in constant time: every stored digest
        is compared, whichever matches, so the time taken says nothing."""
        digest = recovery_code_digest(token)
        match = None
        for code in self.codes.all():
            if hmac.compare_digest(code.digest, digest):
                match = code
        return match


class RecoveryCode(models.Model):
    """One unused recovery code, as its SHA-256 digest; deleted once used."""

    device = models.ForeignKey(
        RecoveryDevice, on_delete=models.CASCADE, related_name="codes"
    )
    digest = models.CharField(max_length=64, editable=False)

    def __str__(self) -> str:
        return f"recovery code {self.pk} of {self.device}"
