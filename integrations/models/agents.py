"""On-site Sage Pro agents and the commands the portal relays to them.

An agent runs next to a customer's Sage Pro data and opens only outbound HTTPS
connections to the portal (`integrations.relay`). It proves who it is with a bearer
token the portal keeps only as a SHA-256 hash, and it checks that every command it
runs came from the portal with the signing key the portal keeps encrypted. A Sage Pro
connection whose `transport` is "agent" names the agent that serves it.
"""

import hashlib
import hmac
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from integrations.crypto import EncryptedTextField
from integrations.models.review import ReviewItem


def digest(secret: str) -> str:
    """SHA-256 of a secret, hex: what the portal keeps of tokens and codes. The secrets
    carry 128 bits or more of randomness, so a plain hash is enough (no salt/stretch)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def offline_after() -> timedelta:
    return timedelta(minutes=getattr(settings, "AGENT_OFFLINE_MINUTES", 5))


class Agent(models.Model):
    """One installed agent, its credentials (hashed or encrypted) and its last report."""

    name = models.CharField(
        max_length=100, help_text="Which site or server it runs on."
    )
    token_hash = models.CharField(max_length=64, blank=True, editable=False)
    signing_key = EncryptedTextField(blank=True, editable=False)
    enrolled_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # What the last heartbeat said.
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    version = models.CharField(max_length=40, blank=True)
    sage_reachable = models.BooleanField(null=True, blank=True)
    journal_backlog = models.IntegerField(null=True, blank=True)
    needs_review_count = models.IntegerField(default=0)
    last_integrity = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_online(self, now: Any = None) -> bool:
        """A heartbeat within AGENT_OFFLINE_MINUTES, and not revoked."""
        now = now or timezone.now()
        return (
            not self.is_revoked
            and self.last_heartbeat_at is not None
            and now - self.last_heartbeat_at <= offline_after()
        )

    def token_matches(self, secret: str) -> bool:
        if self.is_revoked or not self.token_hash:
            return False
        return hmac.compare_digest(self.token_hash, digest(secret))

    def revoke(self) -> int:
        """Refuse every call from this agent from now on and cancel its queued
        commands (they never ran). Returns how many commands were cancelled."""
        now = timezone.now()
        self.revoked_at = now
        self.token_hash = ""
        self.signing_key = ""
        self.save(update_fields=["revoked_at", "token_hash", "signing_key"])
        self.enrolment_codes.filter(used_at=None).update(expires_at=now)
        return RelayCommand.objects.filter(
            connection__agent=self, state=RelayCommand.State.QUEUED
        ).update(state=RelayCommand.State.CANCELLED, finished_at=now)


class EnrolmentCode(models.Model):
    """A one-time code an agent trades for its credentials; only its hash is kept."""

    agent = models.ForeignKey(
        Agent, on_delete=models.CASCADE, related_name="enrolment_codes"
    )
    code_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"enrolment code for {self.agent} until {self.expires_at:%H:%M}"


class AgentReviewEntry(models.Model):
    """A journal entry an agent reported as needing a person, and the review item it
    opened: an entry reported in every heartbeat opens one item, once."""

    agent = models.ForeignKey(
        Agent, on_delete=models.CASCADE, related_name="review_entries"
    )
    entry_id = models.CharField(max_length=100)
    review_item = models.ForeignKey(
        ReviewItem, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "entry_id"], name="one_review_entry_per_agent_entry"
            )
        ]

    def __str__(self) -> str:
        return f"{self.agent}: journal entry {self.entry_id}"


class RelayCommand(models.Model):
    """One contract request relayed to an agent, and its answer.

    queued -> leased -> answered; a command nobody leased before `lease_deadline` is
    cancelled (it never ran); one leased but unanswered when the portal stops waiting
    is abandoned (its outcome is unknown; a late answer is kept but changes nothing);
    one the agent would not run (bad signature, expired, replayed) is refused.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        LEASED = "leased", "Leased"
        ANSWERED = "answered", "Answered"
        CANCELLED = "cancelled", "Cancelled (never leased)"
        ABANDONED = "abandoned", "Abandoned (outcome unknown)"
        REFUSED = "refused", "Refused by the agent"

    connection = models.ForeignKey(
        "integrations.Connection", on_delete=models.CASCADE, related_name="commands"
    )
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    company = models.CharField(max_length=2)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    query = models.JSONField(default=list, blank=True)  # [[name, value], ...]
    headers = models.JSONField(default=dict, blank=True)
    body = models.TextField(blank=True)  # the body's text, or base64 (body_encoding)
    body_encoding = models.CharField(max_length=10, default="utf-8")
    idempotency_key = models.CharField(max_length=200, blank=True)
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.QUEUED, db_index=True
    )
    created_at = models.DateTimeField(default=timezone.now)
    lease_deadline = models.DateTimeField()
    expires_at = models.DateTimeField()
    lease_id = models.CharField(max_length=32, blank=True, db_index=True)
    leased_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.IntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    response_body = models.TextField(blank=True)
    refusal = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["state", "connection"])]

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.state})"
