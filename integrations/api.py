"""Webhook endpoints: store first, verify, queue, answer fast.

Nothing here calls PayTrace or Sage Pro. A valid new event is written together with
the django-q2 task that processes it, in one database transaction (the ORM broker
lives in the same database), so the two commit or roll back together.
"""

import json
import logging
import time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from integrations import processing
from integrations.connectors.paytrace import parse_silent_post
from integrations.models import Connection, Event, InboundDelivery, ReviewItem
from integrations.redaction import redact_data, redact_headers, redact_text

logger = logging.getLogger(__name__)

EVENT_TYPES = (
    "transaction.approved",
    "transaction.declined",
    "transaction.settled",
    "transaction.voided",
    "transaction.refunded",
)

# What standardwebhooks says → the machine-readable reason we answer and record.
_VERIFY_REASONS = {
    "Missing required headers": "missing_signature_headers",
    "Invalid Signature Headers": "invalid_timestamp",
    "Message timestamp too old": "timestamp_out_of_range",
    "Message timestamp too new": "timestamp_out_of_range",
    "No matching signature found": "signature_mismatch",
}


class RecordSerializer(serializers.Serializer):
    """The parts of a PayTrace export record the pipeline cannot do without."""

    transaction_id = serializers.RegexField(
        r"^\d{1,20}$",
        error_messages={"invalid": "must be PayTrace's numeric transaction id"},
    )
    amount = serializers.DecimalField(
        max_digits=14, decimal_places=2, min_value=Decimal("0")
    )
    transaction_type = serializers.CharField(required=False, allow_blank=True)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("transaction_id"), int):
            data = {**data, "transaction_id": str(data["transaction_id"])}
        return super().to_internal_value(data)


class EventSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=EVENT_TYPES)
    occurred_at = serializers.DateTimeField()
    data = RecordSerializer()

    def validate_occurred_at(self, value: Any) -> Any:
        raw = self.initial_data.get("occurred_at", "")
        if isinstance(raw, str) and not (
            raw.endswith("Z") or "+" in raw[10:] or "-" in raw[10:]
        ):
            raise serializers.ValidationError(
                "must carry a UTC offset, e.g. 2026-03-04T14:07:09Z"
            )
        return value


class RawBodyParser(BaseParser):
    """Leave the body alone: the signature is checked on the exact bytes."""

    media_type = "*/*"

    def parse(
        self, stream: Any, media_type: str | None = None, parser_context: Any = None
    ) -> bytes:
        return b""


def _client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


_webhook_cache: dict[str, tuple[float, Connection | None, list[str]]] = {}


def _webhook_connection(slug: str) -> tuple[Connection | None, list[str]]:
    """The PayTrace connection and its decrypted active secrets, kept in memory for
    WEBHOOK_CACHE_SECONDS: a deactivated connection or a new secret takes effect
    within that time, and the hot path skips two queries and the decryption."""
    ttl = settings.WEBHOOK_CACHE_SECONDS
    now = time.monotonic()
    cached = _webhook_cache.get(slug)
    if ttl and cached and now - cached[0] < ttl:
        return cached[1], cached[2]
    connection = Connection.objects.filter(
        slug=slug, kind=Connection.Kind.PAYTRACE
    ).first()
    secrets = connection.active_webhook_secrets() if connection else []
    if ttl:
        _webhook_cache[slug] = (now, connection, secrets)
    return connection, secrets


def _reject(
    delivery: InboundDelivery,
    code: int,
    reason: str,
    detail: str,
    *,
    errors: dict | None = None,
) -> Response:
    """Record a refused delivery with its machine-readable reason, and answer it."""
    if not delivery.signature_result:
        delivery.signature_result = InboundDelivery.SignatureResult.INVALID
    delivery.failure_reason = reason
    delivery.failure_detail = json.dumps(errors) if errors else detail
    delivery.response_status = code
    delivery.save()
    logger.warning(
        "webhook rejected slug=%s status=%s reason=%s",
        delivery.connection_slug,
        code,
        reason,
    )
    body: dict[str, Any] = {"status": "rejected", "reason": reason}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    return Response(body, status=code)


def _verify(
    raw: str, headers: dict[str, str], secrets: list[str]
) -> tuple[bool, str, str]:
    """Check a Standard Webhooks signature against every active secret (rotation)."""
    if not secrets:
        return False, "no_active_secret", "The connection has no active webhook secret."
    reason, detail = "signature_mismatch", "No matching signature found"
    for secret in secrets:
        try:
            Webhook(secret).verify(raw, headers, json_parse=False)
            return True, "", ""
        except WebhookVerificationError as exc:
            detail = str(exc)
            reason = _VERIFY_REASONS.get(detail, "signature_invalid")
            if reason != "signature_mismatch":
                break  # header and timestamp problems are the same for every secret
        except (ValueError, TypeError) as exc:  # malformed signature header
            reason, detail = "malformed_signature_header", str(exc)
            break
    return False, reason, detail


_REJECTED = inline_serializer(
    "WebhookRejected",
    {
        "status": serializers.CharField(default="rejected"),
        "reason": serializers.CharField(
            help_text="Machine-readable: signature_mismatch, timestamp_out_of_range, …"
        ),
        "detail": serializers.CharField(required=False),
        "errors": serializers.DictField(
            required=False, help_text="Field errors (400 invalid_shape)."
        ),
    },
)
_QUEUED = inline_serializer(
    "WebhookQueued",
    {
        "status": serializers.CharField(default="queued"),
        "event": serializers.IntegerField(),
    },
)
_REJECTIONS = {
    400: OpenApiResponse(_REJECTED, description="Not JSON, or not the expected shape."),
    401: OpenApiResponse(
        _REJECTED,
        description="Missing or bad signature, or a timestamp outside ±5 minutes.",
    ),
    404: OpenApiResponse(_REJECTED, description="Unknown or inactive connection."),
    413: OpenApiResponse(_REJECTED, description="Body over 256 KiB."),
}


class PayTraceWebhookView(APIView):
    """`POST /webhooks/paytrace/<slug>/`: relayed, Standard-Webhooks-signed events."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes = [RawBodyParser]
    throttle_classes: list = []

    @extend_schema(
        summary="Receive a signed PayTrace payment event",
        description="Standard Webhooks signature (`webhook-id`, `webhook-timestamp`, `webhook-signature`) over the raw body.",
        request=EventSerializer,
        responses={
            202: OpenApiResponse(_QUEUED, description="Stored and queued."),
            200: OpenApiResponse(
                _QUEUED,
                description="Duplicate `webhook-id`: already stored; nothing new queued.",
            ),
            **_REJECTIONS,
        },
        auth=[],
    )
    def post(self, request: Request, slug: str) -> Response:
        connection, secrets = _webhook_connection(slug)
        delivery = InboundDelivery(
            connection=connection,
            connection_slug=slug[:60],
            kind=InboundDelivery.Kind.WEBHOOK,
            webhook_id=request.headers.get("webhook-id", "")[:200],
            remote_addr=_client_ip(request),
        )
        delivery.headers, _ = redact_headers(dict(request.headers))

        if connection is None or not connection.is_active:
            return _reject(
                delivery,
                404,
                "unknown_connection",
                f"No active PayTrace connection '{slug}'.",
            )

        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.WEBHOOK_MAX_BODY_BYTES:
            delivery.body_size = length
            return _reject(
                delivery,
                413,
                "body_too_large",
                f"Bodies are limited to {settings.WEBHOOK_MAX_BODY_BYTES} bytes.",
            )
        raw_bytes = request.body
        delivery.body_size = len(raw_bytes)
        if len(raw_bytes) > settings.WEBHOOK_MAX_BODY_BYTES:
            return _reject(
                delivery,
                413,
                "body_too_large",
                f"Bodies are limited to {settings.WEBHOOK_MAX_BODY_BYTES} bytes.",
            )
        try:
            raw = raw_bytes.decode("utf-8")
        except UnicodeDecodeError:
            return _reject(delivery, 400, "invalid_encoding", "The body is not UTF-8.")
        delivery.body, body_has_card = redact_text(raw)
        delivery.contains_card_data = body_has_card

        ok, reason, detail = _verify(raw, dict(request.headers), secrets)
        if not ok:
            return _reject(delivery, 401, reason, detail)
        delivery.signature_result = InboundDelivery.SignatureResult.VALID

        try:
            body = json.loads(raw, parse_float=Decimal)
        except ValueError as exc:
            return _reject(
                delivery, 400, "invalid_json", f"The body is not JSON: {exc}"
            )
        serializer = EventSerializer(data=body if isinstance(body, dict) else {})
        if not isinstance(body, dict) or not serializer.is_valid():
            errors = (
                serializer.errors
                if isinstance(body, dict)
                else {"non_field_errors": ["expected a JSON object"]}
            )
            return _reject(delivery, 400, "invalid_shape", "", errors=errors)

        payload, payload_has_card = redact_data(body)
        has_card = body_has_card or payload_has_card
        delivery.contains_card_data = has_card
        return self._accept(
            delivery, connection, serializer.validated_data, payload, has_card
        )

    def _accept(
        self,
        delivery: InboundDelivery,
        connection: Connection,
        data: dict,
        payload: dict,
        has_card: bool,
    ) -> Response:
        # Three writes: the event (in a savepoint, so a duplicate id is harmless even
        # under concurrency), the delivery that points at it, and the queued task.
        with transaction.atomic():
            try:
                with transaction.atomic():
                    event = Event.objects.create(
                        connection=connection,
                        event_id=delivery.webhook_id,
                        source=Event.Source.WEBHOOK,
                        type=data["type"],
                        occurred_at=data["occurred_at"],
                        transaction_id=data["data"]["transaction_id"],
                        payload=payload,
                        contains_card_data=has_card,
                        received_at=delivery.received_at,
                    )
            except IntegrityError:
                delivery.event = Event.objects.get(
                    connection=connection, event_id=delivery.webhook_id
                )
                delivery.response_status = 200
                delivery.save()
                return Response(
                    {"status": "duplicate", "event": delivery.event_id},
                    status=status.HTTP_200_OK,
                )
            delivery.event = event
            delivery.response_status = 202
            delivery.save()
            if has_card:
                ReviewItem.objects.create(
                    kind=ReviewItem.Kind.CARD_DATA,
                    event=event,
                    reason=f"Event {event.event_id} from {connection.slug} carried card data (masked before storage). Ask the sender to stop sending it.",
                )
            processing.queue("process_event", event.pk)
        logger.info(
            "webhook queued event=%s type=%s connection=%s",
            event.pk,
            event.type,
            connection.slug,
        )
        return Response(
            {"status": "queued", "event": event.pk}, status=status.HTTP_202_ACCEPTED
        )


class SilentPostView(APIView):
    """`POST /webhooks/paytrace/<slug>/silent-post/`: PayTrace's legacy, unsigned post.

    The body is never trusted: it is recorded and the transaction it names is looked up
    with `transactions/export/by_id` by a worker before anything enters the pipeline.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        summary="Receive PayTrace's legacy silent post",
        request={
            "application/x-www-form-urlencoded": inline_serializer(
                "SilentPost", {"parmList": serializers.CharField()}
            )
        },
        responses={
            202: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="Recorded; confirmed by lookup before processing.",
            ),
            **_REJECTIONS,
        },
        auth=[],
    )
    def post(self, request: Request, slug: str) -> Response:
        connection = Connection.objects.filter(
            slug=slug, kind=Connection.Kind.PAYTRACE
        ).first()
        delivery = InboundDelivery(
            connection=connection,
            connection_slug=slug[:60],
            kind=InboundDelivery.Kind.SILENT_POST,
            remote_addr=_client_ip(request),
            signature_result=InboundDelivery.SignatureResult.UNSIGNED,
        )
        delivery.headers, _ = redact_headers(dict(request.headers))
        raw_bytes = request.body
        delivery.body_size = len(raw_bytes)
        delivery.body, delivery.contains_card_data = redact_text(
            raw_bytes.decode("utf-8", errors="replace")
        )
        if connection is None or not connection.is_active:
            return _reject(
                delivery,
                404,
                "unknown_connection",
                f"No active PayTrace connection '{slug}'.",
            )
        if len(raw_bytes) > settings.WEBHOOK_MAX_BODY_BYTES:
            return _reject(delivery, 413, "body_too_large", "Body too large.")
        fields = parse_silent_post(request.POST.get("parmList", ""))
        transaction_id = fields.get("TRANSACTIONID", "").strip()
        if not transaction_id.isdigit():
            return _reject(
                delivery,
                400,
                "invalid_shape",
                "parmList needs a numeric TRANSACTIONID.",
            )
        delivery.webhook_id = f"silent-post:{transaction_id}"
        delivery.response_status = 202
        with transaction.atomic():
            delivery.save()
            processing.queue("confirm_silent_post", delivery.pk)
        return Response(
            {"status": "queued", "delivery": delivery.pk},
            status=status.HTTP_202_ACCEPTED,
        )
