"""The external systems the portal talks to, and their webhook signing secrets."""

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from integrations.crypto import EncryptedTextField
from integrations.models.storage import validate_time_zone


class Environment(models.TextChoices):
    DEV = "dev", "Development"
    QA = "qa", "QA"
    PROD = "prod", "Production"


@dataclass(frozen=True)
class ConnectionCheck:
    """The answer to "Test connection": what happened, in plain words, and the fix."""

    ok: bool
    summary: str
    fix: str = ""
    detail: str = ""
    latency_ms: int | None = None


class Connection(models.Model):
    """One external system the portal talks to, with its credentials encrypted at rest."""

    class Kind(models.TextChoices):
        PAYTRACE = "paytrace", "PayTrace"
        SAGEPRO = "sagepro", "Sage Pro gateway"
        STOREFRONT = "storefront", "eCommerce storefront"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=60, unique=True)
    environment = models.CharField(
        max_length=10, choices=Environment.choices, default=Environment.DEV
    )
    base_url = models.URLField(
        max_length=300,
        blank=True,
        help_text="PayTrace host root, or the Sage Pro gateway's /api/v1 URL (not "
        "needed for a Sage Pro company reached through an on-site agent).",
    )
    username = models.CharField(
        max_length=200, blank=True, help_text="PayTrace API user."
    )
    password = EncryptedTextField(
        blank=True, help_text="PayTrace API password or Sage Pro gateway API key."
    )
    integrator_id = models.CharField(
        max_length=40, blank=True, help_text="PayTrace integrator id."
    )
    time_zone = models.CharField(
        max_length=64,
        default="America/Los_Angeles",
        validators=[validate_time_zone],
        help_text="Zone of the gateway's local times (PayTrace dates carry none).",
    )
    company_id = models.CharField(
        max_length=2,
        blank=True,
        default="01",
        help_text="Sage Pro company id (2 characters).",
    )
    sagepro = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        limit_choices_to={"kind": "sagepro"},
        related_name="payment_sources",
        help_text="For a PayTrace connection: the Sage Pro company its payments post to.",
    )
    payment_method = models.CharField(
        max_length=20,
        default="CARD",
        help_text="Sage Pro receipt method for these payments.",
    )
    suspense_account = models.CharField(
        max_length=24, blank=True, help_text="GL account used when no GL rule matches."
    )
    base_currency = models.CharField(
        max_length=3, default="USD", help_text="Sage Pro company's base currency."
    )

    class Transport(models.TextChoices):
        DIRECT = "direct", "Direct HTTP"
        AGENT = "agent", "On-site agent (relay)"

    transport = models.CharField(
        max_length=10,
        choices=Transport.choices,
        default=Transport.DIRECT,
        help_text="Sage Pro: reach the gateway at its URL, or through an on-site agent.",
    )
    agent = models.ForeignKey(
        "integrations.Agent",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="connections",
        help_text="Sage Pro with transport 'agent': the agent that serves this company.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()}, {self.environment})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        creating = self._state.adding
        super().save(*args, **kwargs)
        if creating and self.kind == self.Kind.PAYTRACE:
            from mappings.models import StatusMap

            StatusMap.seed_defaults(self)

    def clean(self) -> None:
        through_agent = (
            self.kind == self.Kind.SAGEPRO and self.transport == self.Transport.AGENT
        )
        if not self.base_url and not through_agent:
            raise ValidationError(
                {
                    "base_url": "Enter the URL this connection calls (only a Sage Pro "
                    "company reached through an on-site agent needs none)."
                }
            )
        if self.transport == self.Transport.AGENT and self.kind != self.Kind.SAGEPRO:
            raise ValidationError(
                {"transport": "Only a Sage Pro connection can go through an agent."}
            )

    def check_connection(self) -> ConnectionCheck:
        """Make the kind's lightest authenticated call with the stored settings.

        PayTrace: a fresh OAuth token. Sage Pro: the company's fiscal periods (the
        gateway's smallest read that needs the API key and the company). Writes
        nothing to the database.
        """
        from integrations.connectors.base import ConnectorError

        started = time.monotonic()
        try:
            if self.kind == self.Kind.SAGEPRO:
                periods = self.sage().list_periods()
                current = next((p["yearprd"] for p in periods if p.get("current")), "")
                what = f"Sage Pro company {self.company_id or '01'} answered" + (
                    f" (current period {current})" if current else ""
                )
            elif self.kind == self.Kind.PAYTRACE:
                self.paytrace().access_token(renew=True)
                what = f"PayTrace signed in {self.username} and issued a token"
            else:
                return ConnectionCheck(
                    False,
                    f"There is no connection test for a {self.get_kind_display()} yet.",
                )
        except ConnectorError as exc:
            ms = round((time.monotonic() - started) * 1000)
            summary, fix = self._explain(exc)
            return ConnectionCheck(False, summary, fix, str(exc), ms)
        ms = round((time.monotonic() - started) * 1000)
        return ConnectionCheck(True, f"{what} in {ms} ms.", latency_ms=ms)

    def _explain(self, exc: Exception) -> tuple[str, str]:
        """A connector error in plain words, and what to change."""
        code = getattr(exc, "code", "")
        status = getattr(exc, "status", None)
        system = self.get_kind_display()
        if code in ("UNAVAILABLE", "TIMEOUT"):
            return (
                f"{system} could not be reached at {self.base_url or '(no URL)'}.",
                "Check the URL, and that the service (or the on-site agent) is "
                "running and reachable from the portal.",
            )
        if status == 401 or code in ("UNAUTHORIZED", "invalid_grant"):
            secret = (
                "API key" if self.kind == self.Kind.SAGEPRO else "user and password"
            )
            return (
                f"{system} refused the {secret}.",
                f"Enter the right {secret} in “Endpoint and credentials”, save, and "
                "test again.",
            )
        if code == "COMPANY_NOT_FOUND":
            return (
                f"Sage Pro has no company {self.company_id or '01'}.",
                "Check the company id (two characters, e.g. 01).",
            )
        if status == 404:
            return (
                f"{self.base_url} answered, but not as the {system} API.",
                "Check the URL: PayTrace's host root, or the gateway's URL ending in "
                "/api/v1.",
            )
        return (f"{system} answered with an error: {exc}.", "")

    def webhook_paths(self) -> list[tuple[str, str]]:
        """(what, path) for each URL a sender posts this connection's events to."""
        from django.urls import reverse

        if not self.slug:
            return []
        if self.kind == self.Kind.STOREFRONT:
            return [
                (
                    "Storefront order webhooks (HMAC-SHA256 in X-Shopify-Hmac-Sha256)",
                    reverse("storefront-webhook", args=[self.slug]),
                )
            ]
        if self.kind != self.Kind.PAYTRACE:
            return []
        return [
            (
                "Relayed PayTrace events (signed webhooks)",
                reverse("paytrace-webhook", args=[self.slug]),
            ),
            (
                "PayTrace silent post (give PayTrace this URL)",
                reverse("paytrace-silent-post", args=[self.slug]),
            ),
        ]

    def active_webhook_secrets(self) -> list[str]:
        now = timezone.now()
        return [
            s.secret
            for s in self.webhook_secrets.filter(is_active=True)
            if s.expires_at is None or s.expires_at > now
        ]

    def paytrace(self):  # noqa: ANN201 - import cycle
        from integrations.connectors.paytrace import PayTraceConnector

        connector = PayTraceConnector(
            self.base_url,
            self.username,
            self.password,
            self.integrator_id,
            self.time_zone,
            timeout=settings.OUTBOUND_TIMEOUT_SECONDS,
        )
        connector.label = self.slug  # the gateway metrics' connection label
        return connector

    def sage(self):  # noqa: ANN201 - import cycle
        from integrations.connectors.sagepro import SageProConnector

        if self.transport == self.Transport.AGENT:
            from integrations.connectors.relay import RelaySageProConnector

            return RelaySageProConnector(
                self, timeout=settings.OUTBOUND_TIMEOUT_SECONDS
            )
        connector = SageProConnector(
            self.base_url,
            self.password,
            self.company_id or "01",
            timeout=settings.OUTBOUND_TIMEOUT_SECONDS,
        )
        connector.label = self.slug  # the gateway metrics' connection label
        return connector

    def mirror(self, gateway: Any = None):  # noqa: ANN201 - import cycle
        """The Sage Pro reader that answers from the local mirror
        (`integrations.mirror.MirrorReader`); `gateway` replaces `sage()` for misses."""
        from integrations.mirror import MirrorReader

        return MirrorReader(self, gateway)


class WebhookSecret(models.Model):
    """A signing secret for inbound webhooks. Several may be active during a rotation."""

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="webhook_secrets"
    )
    label = models.CharField(max_length=60, blank=True)
    secret = EncryptedTextField(help_text="Standard Webhooks secret, whsec_…")
    is_active = models.BooleanField(default=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Stop accepting it after this time."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.label or f"secret #{self.pk}"
