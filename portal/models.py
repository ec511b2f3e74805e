import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models

PREFIX_LENGTH = 8
KEY_BYTES = 20

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiTokenManager(models.Manager["ApiToken"]):
    def create_token(self, user: "User", name: str = "") -> tuple["ApiToken", str]:
        """Make a token for `user`; return the row and the key, which is shown once.

        Only the key's SHA-256 digest and its first characters (to find the row and to
        tell tokens apart in the admin) are stored.
        """
        token = self.model(user=user, name=name)
        key = token.set_new_key()
        token.save(force_insert=True)
        return token, key

    def find(self, key: str) -> "ApiToken | None":
        """The token whose key is `key`, or None."""
        if len(key) != 2 * KEY_BYTES or not key.isascii() or not key.isalnum():
            return None
        digest = digest_of(key)
        for token in self.filter(prefix=key[:PREFIX_LENGTH]).select_related("user"):
            if hmac.compare_digest(token.digest, digest):
                return token
        return None


class ApiToken(models.Model):
    """A read-API key, stored as its SHA-256 digest: the key itself is never kept.

    Keys are 160 random bits, so an unsalted fast hash is enough: there is nothing to
    guess from the digest, and a database leak yields no usable key.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True, help_text="What it is for.")
    prefix = models.CharField(max_length=PREFIX_LENGTH, db_index=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiTokenManager()

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    def set_new_key(self) -> str:
        """Give the token a new random key (not saved); return the key."""
        key = secrets.token_hex(KEY_BYTES)
        self.prefix, self.digest = key[:PREFIX_LENGTH], digest_of(key)
        return key


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
