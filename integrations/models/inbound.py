"""What arrived at the boundary: every webhook request, and the verified events.

Trust model (after dj-stripe): an `InboundDelivery` row is written for every request the
webhook endpoint receives, valid or not, with card data already masked. Only a delivery
whose signature verified (or, for an unsigned silent post, that PayTrace confirmed by
lookup) produces an `Event`; only events are processed.
"""

import json
import traceback
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, models, transaction
from django.http import HttpRequest
from django.utils import timezone

from integrations.models.connections import Connection
from integrations.models.failures import backoff_delay, describe_failure, lease
from integrations.models.storage import (
    StorableValuesMixin,
    insert_row,
    storable_text,
)
from integrations.redaction import (
    mask_card_numbers,
    redact_data,
    redact_headers,
    redact_text,
)


def _column_text(text: str) -> str:
    """Text a column can hold: PostgreSQL refuses NUL, which a raw body may carry."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _masked_text(text: str) -> tuple[str, bool]:
    masked, found = redact_text(text)
    return _column_text(masked), found


def _masked_headers(request: HttpRequest) -> tuple[dict[str, str], bool]:
    """The request's headers, secrets and card data masked (names as well)."""
    headers, found = {}, False
    for name, value in request.headers.items():
        masked_name, hit = mask_card_numbers(_column_text(name))
        headers[masked_name] = _column_text(value)
        found = found or hit
    headers, hit = redact_headers(headers)
    return headers, found or hit


class InboundDelivery(StorableValuesMixin, models.Model):
    """Every request that reached a webhook endpoint, valid or not (card data masked)."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "Signed webhook"
        SILENT_POST = "silent_post", "Legacy silent post"

    class SignatureResult(models.TextChoices):
        VALID = "valid", "Valid"
        INVALID = "invalid", "Invalid"
        UNSIGNED = "unsigned", "Unsigned (confirm by lookup)"
        CONFIRMED = "confirmed", "Confirmed by lookup"
        UNCONFIRMED = "unconfirmed", "Not confirmed by lookup"

    connection = models.ForeignKey(
        Connection,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
    )
    connection_slug = models.CharField(max_length=60, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.WEBHOOK)
    webhook_id = models.CharField(max_length=200, blank=True, db_index=True)
    headers = models.JSONField(default=dict)
    body = models.TextField(blank=True)
    body_size = models.PositiveIntegerField(default=0)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    signature_result = models.CharField(max_length=20, choices=SignatureResult.choices)
    failure_reason = models.CharField(
        max_length=60, blank=True, help_text="Machine-readable reason."
    )
    failure_detail = models.TextField(blank=True)
    response_status = models.PositiveSmallIntegerField(default=0)
    contains_card_data = models.BooleanField(
        default=False, help_text="Card data was found and masked."
    )
    event = models.ForeignKey(
        "Event",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
    )

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "inbound deliveries"

    def __str__(self) -> str:
        return f"delivery #{self.pk} ({self.signature_result})"

    @classmethod
    def from_request(
        cls,
        request: HttpRequest,
        slug: str,
        connection: Connection | None,
        kind: str,
        **fields: Any,
    ) -> "InboundDelivery":
        """The (unsaved) row for a request, every text masked before it is stored."""
        delivery = cls(
            connection=connection,
            connection_slug=_masked_text(slug)[0][:60],
            remote_addr=request.META.get("REMOTE_ADDR") or None,
            kind=kind,
            **fields,
        )
        delivery.headers, delivery.contains_card_data = _masked_headers(request)
        return delivery

    def keep_webhook_id(self, webhook_id: str) -> bool:
        """Keep the sender's event id as stored; returns whether it held card data.

        Card-number runs inside an id are masked with letters keyed on the number, so
        two ids never become one. An id that is nothing but a card number, or too long
        to keep whole, is refused by the caller; the row keeps a masked, cut copy.
        """
        event_id, found = mask_card_numbers(_column_text(webhook_id), keyed=True)
        self.webhook_id = event_id[:200]
        self.contains_card_data = self.contains_card_data or found
        return found

    def keep_body(self, text: str) -> bool:
        """Keep the body's text, card data masked; returns whether it held any."""
        self.body, found = _masked_text(text)
        return found

    def record_refusal(
        self, code: int, reason: str, detail: str, errors: dict | None = None
    ) -> tuple[str, dict | None]:
        """Save this delivery as refused, with its machine-readable reason.

        Returns the detail and the field errors as they may be answered: DRF's
        messages and ours name fields, not values; they are masked all the same, on
        the row and in the answer.
        """
        if not self.signature_result:
            self.signature_result = self.SignatureResult.INVALID
        detail, _ = _masked_text(detail)
        if errors:
            errors, _ = redact_data(json.loads(json.dumps(errors)))
        self.failure_reason = reason
        self.failure_detail = json.dumps(errors) if errors else detail
        self.response_status = code
        self.save()
        return detail, errors


# The type of an event made from a record of PayTrace's export (poll, silent post).
EXPORTED = "transaction.exported"


class Event(StorableValuesMixin, models.Model):
    """A verified notification about one PayTrace transaction, processed by a worker."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed (will retry)"
        DEAD = "dead", "Dead"

    class Source(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        SILENT_POST = "silent_post", "Silent post"
        POLL = "poll", "Poll"

    connection = models.ForeignKey(
        Connection, on_delete=models.PROTECT, related_name="events"
    )
    event_id = models.CharField(
        max_length=200, help_text="The sender's id (webhook-id)."
    )
    source = models.CharField(
        max_length=20, choices=Source.choices, default=Source.WEBHOOK
    )
    type = models.CharField(max_length=60)
    occurred_at = models.DateTimeField()
    transaction_id = models.CharField(max_length=40, blank=True, db_index=True)
    payload = models.JSONField(
        encoder=DjangoJSONEncoder, help_text="The event body with card data masked."
    )
    contains_card_data = models.BooleanField(
        default=False, help_text="The sender put card data in it; follow up with them."
    )
    state = models.CharField(
        max_length=20, choices=State.choices, default=State.QUEUED, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_traceback = models.TextField(blank=True)
    outcome = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "event_id"], name="event_unique_per_connection"
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"

    @classmethod
    def from_delivery(
        cls,
        delivery: InboundDelivery,
        data: dict[str, Any],
        body: Any,
        *,
        has_card: bool,
    ) -> "Event":
        """The (unsaved) event a verified webhook delivery carries.

        `data` is the validated body and `body` the parsed one, stored with card data
        masked; `has_card` says whether the id or the raw body held card data.
        """
        payload, payload_has_card = redact_data(body)
        return cls(
            connection=delivery.connection,
            event_id=delivery.webhook_id,
            source=cls.Source.WEBHOOK,
            type=data["type"],
            occurred_at=data["occurred_at"],
            transaction_id=data["data"]["transaction_id"],
            payload=payload,
            contains_card_data=has_card or payload_has_card,
            received_at=delivery.received_at,
        )

    @classmethod
    def from_export(
        cls,
        connection: Connection,
        event_id: str,
        record: Any,
        *,
        source: str,
        transaction_id: str,
        occurred_at: datetime | None = None,
    ) -> "Event":
        """The (unsaved) event for a record PayTrace's export returned (a poll, or a
        silent post confirmed by lookup), card data masked."""
        data, has_card = redact_data(record)
        return cls(
            connection=connection,
            event_id=event_id[:200],
            source=source,
            type=EXPORTED,
            occurred_at=occurred_at or timezone.now(),
            transaction_id=transaction_id,
            payload={"type": EXPORTED, "data": data},
            contains_card_data=has_card,
        )

    def record(self) -> tuple["Event", bool]:
        """Insert this new event unless its (connection, event id) is stored already.

        Returns the stored event and whether it is this one. The insert skips a
        repeat itself (`ON CONFLICT DO NOTHING`: no savepoint; under concurrency the
        second writer waits for the first), so a repeat is harmless; any other refusal
        by the database is raised, not mistaken for a repeat.
        """
        if insert_row(self, unless_exists=("connection", "event_id")):
            return self, True
        stored = Event.objects.filter(
            connection=self.connection, event_id=self.event_id
        ).first()
        if stored is None:  # the first writer rolled back between the two statements
            raise IntegrityError(f"event {self.event_id} was neither new nor stored")
        return stored, False

    def open_card_data_review(self) -> None:
        """Ask a reviewer to tell the sender to stop sending card data."""
        self.review_items.create(
            kind=self.review_items.model.Kind.CARD_DATA,
            reason=f"Event {self.event_id} from {self.connection.slug} carried card data (masked before storage). Ask the sender to stop sending it.",
        )

    def mark_failed(
        self, exc: BaseException, *, state: str = State.FAILED, error: str = ""
    ) -> None:
        """Keep the error (`error`, or the exception's own text) and its traceback."""
        self.state = state
        self.last_error = storable_text(error or f"{type(exc).__name__}: {exc}")[:2000]
        self.last_traceback = storable_text("".join(traceback.format_exception(exc)))[
            -8000:
        ]
        self.save(update_fields=["state", "last_error", "last_traceback"])

    @classmethod
    def claim(cls, event_id: int) -> "Event | None":
        """Take the event for one attempt, or None when it is done, held by a live
        worker, or backing off. The attempt is counted and committed before any work,
        so an event whose every attempt died with its worker stops instead of looping."""
        with transaction.atomic():
            event = (
                cls.objects.select_for_update()
                .select_related("connection")
                .filter(pk=event_id)
                .first()
            )
            if event is None or event.state in (cls.State.PROCESSED, cls.State.DEAD):
                return None
            now = timezone.now()
            if (
                event.state == cls.State.PROCESSING
                and event.started_at
                and event.started_at > now - lease()
            ):
                return None  # another worker holds it
            if (
                event.state == cls.State.FAILED
                and event.next_attempt_at
                and event.next_attempt_at > now
            ):
                return None  # backing off
            if event.attempts >= settings.EVENT_MAX_ATTEMPTS:
                # No attempt finished: each one died with its worker. Stop, don't loop.
                reason = event.last_error or "its worker stopped during every attempt"
                event.fail(
                    RuntimeError(f"gave up after {event.attempts} attempts: {reason}")
                )
                return None
            event.state = cls.State.PROCESSING
            event.attempts += 1
            event.started_at = now
            event.save(update_fields=["state", "attempts", "started_at"])
            return event

    @classmethod
    def claim_batch(cls, limit: int) -> list["Event"]:
        """Take up to `limit` queued events for one attempt each, oldest first.

        Like `claim`, in one transaction: the attempts are counted and committed before
        any work. Rows another worker holds are skipped (PostgreSQL `SKIP LOCKED`;
        SQLite's IMMEDIATE transactions serialise claims). An event whose attempts are
        used up (each died with its worker) is failed instead of claimed.
        """
        now = timezone.now()
        with transaction.atomic():
            events = list(
                cls.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("connection")
                .filter(state=cls.State.QUEUED)
                .order_by("pk")[:limit]
            )
            exhausted = [e for e in events if e.attempts >= settings.EVENT_MAX_ATTEMPTS]
            for spent in exhausted:
                reason = spent.last_error or "its worker stopped during every attempt"
                spent.fail(
                    RuntimeError(f"gave up after {spent.attempts} attempts: {reason}")
                )
            claimed: list[Event] = [
                e for e in events if e.attempts < settings.EVENT_MAX_ATTEMPTS
            ]
            cls.objects.filter(pk__in=[e.pk for e in claimed]).update(
                state=cls.State.PROCESSING,
                attempts=models.F("attempts") + 1,
                started_at=now,
            )
            for event in claimed:
                event.state = cls.State.PROCESSING
                event.attempts += 1
                event.started_at = now
            return claimed

    def fail(self, exc: BaseException) -> str:
        """Record a failure a later attempt may get past: back off, or, once the
        attempts are used up, give up and ask a person. Returns "failed" or "dead"."""
        from integrations.models.payments import PaymentTransaction
        from integrations.models.review import ReviewItem

        if self.attempts >= settings.EVENT_MAX_ATTEMPTS:
            self.mark_failed(exc, state=self.State.DEAD)
            txn = PaymentTransaction.objects.filter(
                connection=self.connection, transaction_id=self.transaction_id
            ).first()
            ReviewItem.open(
                txn,
                ReviewItem.Kind.DEAD,
                f"Event {self.event_id} ({self.type}) failed {self.attempts} times: {describe_failure(exc)}",
                event=self,
            )
            return "dead"
        self.next_attempt_at = timezone.now() + backoff_delay(self.attempts)
        self.save(update_fields=["next_attempt_at"])
        self.mark_failed(exc)
        return "failed"
