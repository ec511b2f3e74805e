"""Payments a person has to look at, and what they decided."""

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from integrations.models.inbound import Event
from integrations.models.payments import PaymentTransaction, Posting
from integrations.models.storage import StorableValuesMixin, saved_user
from mappings.kinds import ReviewKind

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


class ReviewItem(models.Model):
    """A payment a person has to look at."""

    # The matcher's kinds are the stored kinds: one enum, defined in mappings.
    Kind = ReviewKind

    class State(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"
        DISMISSED = "dismissed", "Dismissed"

    kind = models.CharField(max_length=20, choices=Kind.choices, db_index=True)
    state = models.CharField(
        max_length=20, choices=State.choices, default=State.OPEN, db_index=True
    )
    transaction = models.ForeignKey(
        PaymentTransaction,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="review_items",
    )
    posting = models.ForeignKey(
        Posting,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="review_items",
    )
    event = models.ForeignKey(
        Event,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="review_items",
    )
    # Issue 15: a charge on a card on file that needs a person (a hard decline that
    # stopped autopay, a charge whose outcome could not be found).
    charge = models.ForeignKey(
        "integrations.Charge",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="review_items",
    )
    reason = models.TextField()
    error_code = models.CharField(max_length=40, blank=True)
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    resolution = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            # One open item of a kind per transaction: reprocessing never piles up copies.
            models.UniqueConstraint(
                fields=["transaction", "kind"],
                condition=models.Q(state="open"),
                name="one_open_review_item_per_kind",
            )
        ]

    def __str__(self) -> str:
        subject = self.transaction or self.event or self.charge
        return f"{self.get_kind_display()}: {subject}"

    @classmethod
    def open(
        cls,
        txn: PaymentTransaction | None,
        kind: str,
        reason: str,
        *,
        event: Event | None = None,
        posting: Posting | None = None,
        error_code: str = "",
    ) -> "ReviewItem":
        """Open a review item, or refresh the open one of the same kind (never two)."""
        item = (
            cls.objects.filter(transaction=txn, kind=kind, state=cls.State.OPEN).first()
            if txn
            else None
        )
        if item is None:
            item = cls.objects.create(
                transaction=txn,
                kind=kind,
                reason=reason,
                event=event,
                posting=posting,
                error_code=error_code,
            )
        else:
            item.reason, item.error_code = reason, error_code
            item.posting = posting or item.posting
            item.save(update_fields=["reason", "error_code", "posting"])
        if txn is not None:
            txn.record("review_opened", f"{kind}: {reason}", event=event)
        return item

    def resolve(
        self,
        user: "AbstractBaseUser | None",
        resolution: str,
        action: str,
        detail: dict[str, Any],
    ) -> None:
        """Close the item as resolved by `user`, and record the decision on it and on
        its transaction's history."""
        self.state = self.State.RESOLVED
        self.resolved_at = timezone.now()
        self.resolved_by = saved_user(user)
        self.resolution = resolution
        self.save()
        ReviewDecision.objects.create(
            item=self, user=self.resolved_by, action=action, detail=detail
        )
        if self.transaction:
            self.transaction.record(
                f"review_{action}", f"{resolution} by {user or 'system'}", user=user
            )


class ReviewDecision(StorableValuesMixin, models.Model):
    """Who decided what about a review item, and when. Never edited."""

    item = models.ForeignKey(
        ReviewItem, on_delete=models.CASCADE, related_name="decisions"
    )
    at = models.DateTimeField(default=timezone.now)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL
    )
    action = models.CharField(max_length=40)
    detail = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.action} by {self.user} at {self.at:%Y-%m-%d %H:%M}"


class OverrideRequest(models.Model):
    """A reviewer's override waiting for, or given, a second signature (issue 16).

    An override is a decision that changes what the rules produced: today, corrected
    values of a cash receipt ("correct and send again"). With
    `OVERRIDE_SECOND_SIGNATURE` on, nothing is sent until a finance manager other than
    the requester signs it; the request keeps the exact change and the preview the
    requester saw, so the signer signs what was asked, not what the receipt became
    since (`posting_fingerprint` tells the two apart). Never edited by hand.
    """

    class State(models.TextChoices):
        WAITING = "waiting", "Awaiting a second signature"
        SIGNED = "signed", "Signed and applied"
        REFUSED = "refused", "Refused"
        OUTDATED = "outdated", "Outdated (the receipt changed)"

    item = models.ForeignKey(
        ReviewItem, on_delete=models.CASCADE, related_name="override_requests"
    )
    posting = models.ForeignKey(
        Posting, on_delete=models.CASCADE, related_name="override_requests"
    )
    state = models.CharField(
        max_length=20, choices=State.choices, default=State.WAITING, db_index=True
    )
    changes = models.JSONField(
        default=dict,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="The fields the reviewer changed, with their new values.",
    )
    overrides = models.JSONField(
        default=dict,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="The posting's overrides once signed (the kept ones and the change).",
    )
    preview = models.JSONField(
        default=dict,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="What the requester was shown would happen.",
    )
    document = models.JSONField(
        default=list,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="The receipt's fields with the change, as [field, value] pairs.",
    )
    posting_fingerprint = models.CharField(max_length=64)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    requested_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(
        blank=True, help_text="Why it was refused, or why it went out of date."
    )

    class Meta:
        ordering = ["-requested_at", "-id"]
        permissions = [
            (
                "sign_overriderequest",
                "Can sign or refuse a reviewer's override (second signature)",
            )
        ]
        constraints = [
            # One waiting override per item: a second request waits its turn.
            models.UniqueConstraint(
                fields=["item"],
                condition=models.Q(state="waiting"),
                name="one_waiting_override_per_item",
            )
        ]

    def __str__(self) -> str:
        changed = ", ".join(self.changes) or "nothing"
        return f"Override of {changed} on review item {self.item_id} ({self.state})"

    def describe_changes(self) -> str:
        """The change in words: "gl_account → 1100-00; date → 2026-03-02"."""
        return "; ".join(
            f"{name} → {value or '(blank)'}" for name, value in self.changes.items()
        )
