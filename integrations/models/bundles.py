"""Configuration bundles this environment applied: which version it runs, and since when.

`integrations.config.history` writes one row per applied bundle, in the transaction
that applies it; the newest row is the version this environment runs.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class ConfigBundleApplied(models.Model):
    """One bundle applied here: its version, who signed it, who applied it, what changed.

    The bundle itself is not kept: the configuration history (django-reversion) holds
    every row it changed, under a revision commented with this row's version.
    """

    class Signature(models.TextChoices):
        VERIFIED = "verified", "Signed, verified"
        UNSIGNED = "unsigned", "Unsigned (allowed here)"

    version = models.CharField(max_length=120)
    content_hash = models.CharField(
        max_length=64, help_text="SHA-256 of the bundle's configuration."
    )
    label = models.CharField(max_length=200, blank=True)
    source_environment = models.CharField("exported from", max_length=64, blank=True)
    exported_at = models.DateTimeField(null=True, blank=True)
    signature = models.CharField(max_length=10, choices=Signature.choices)
    signer_key = models.CharField("signed by key", max_length=64, blank=True)
    applied_at = models.DateTimeField(default=timezone.now, db_index=True)
    applied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Kept when the account is deleted: the history must still say who.
    applied_by_name = models.CharField(max_length=150, blank=True)
    source = models.CharField(
        max_length=300, help_text="How it arrived: the command and file, or the upload."
    )
    summary = models.TextField()
    plan_lines = models.JSONField(
        default=list, help_text="The import plan, as it was shown and applied."
    )

    class Meta:
        ordering = ["-applied_at", "-id"]
        verbose_name = "applied configuration bundle"

    def __str__(self) -> str:
        return f"Bundle {self.version}"

    @classmethod
    def current(cls) -> "ConfigBundleApplied | None":
        """The bundle this environment runs: the one applied last."""
        return cls.objects.order_by("-applied_at", "-id").first()

    def describe_signature(self) -> str:
        if self.signature == self.Signature.VERIFIED:
            return f"signed by {self.signer_key}"
        return "unsigned"
