"""Webhook endpoints: store first, verify, queue, answer fast.

Nothing here calls PayTrace or Sage Pro. A valid new event is written together with
the django-q2 task that processes it, in one database transaction (the ORM broker
lives in the same database), so the two commit or roll back together.
"""

import json
import logging
import re
import time
from typing import Any
from urllib.parse import unquote_plus

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.parsers import BaseParser, FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from standardwebhooks.webhooks import WebhookVerificationError

from integrations import processing
from integrations.connectors.paytrace import parse_silent_post
from integrations.inbound import (
    BodyError,
    EventSerializer,
    error_fields,
    load_json,
    silent_post_id_problem,
    validate_event,
    webhook_for,
    webhook_id_problem,
)
from integrations.models import Connection, Event, InboundDelivery, ReviewItem
from integrations.redaction import (
    mask_card_numbers,
    redact_data,
    redact_headers,
    redact_text,
)

logger = logging.getLogger(__name__)

# What standardwebhooks says → the machine-readable reason we answer and record.
_VERIFY_REASONS = {
    "Missing required headers": "missing_signature_headers",
    "Invalid Signature Headers": "invalid_timestamp",
    "Message timestamp too old": "timestamp_out_of_range",
    "Message timestamp too new": "timestamp_out_of_range",
    "No matching signature found": "signature_mismatch",
}


class RawBodyParser(BaseParser):
    """Leave the body alone: the signature is checked on the exact bytes."""

    media_type = "*/*"

    def parse(
        self, stream: Any, media_type: str | None = None, parser_context: Any = None
    ) -> bytes:
        return b""


def _client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _storable(text: str) -> str:
    """Text a column can hold: PostgreSQL refuses NUL, which a raw body may carry."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _masked(text: str) -> tuple[str, bool]:
    masked, found = redact_text(text)
    return _storable(masked), found


def _masked_headers(request: HttpRequest) -> tuple[dict[str, str], bool]:
    """The request's headers, secrets and card data masked (names as well)."""
    headers, found = {}, False
    for name, value in request.headers.items():
        masked_name, hit = mask_card_numbers(_storable(name))
        headers[masked_name] = _storable(value)
        found = found or hit
    headers, hit = redact_headers(headers)
    return headers, found or hit


def _content_length(request: HttpRequest) -> int:
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


def _new_delivery(
    request: HttpRequest, slug: str, connection: Connection | None, **fields: Any
) -> InboundDelivery:
    """The delivery row for a request, every text masked before it is stored."""
    delivery = InboundDelivery(
        connection=connection,
        connection_slug=_masked(slug)[0][:60],
        remote_addr=_client_ip(request),
        **fields,
    )
    delivery.headers, delivery.contains_card_data = _masked_headers(request)
    return delivery


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
    unusable = sum(1 for secret in secrets if webhook_for(secret) is None)
    if unusable:
        logger.warning(
            "connection %s has %s active webhook secret(s) that cannot be decoded; "
            "they are skipped. Replace them in the admin.",
            connection.slug,
            unusable,
        )
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
    """Record a refused delivery with its machine-readable reason, and answer it.

    DRF's messages and ours name fields, not values; they are masked all the same,
    on the row and in the answer.
    """
    if not delivery.signature_result:
        delivery.signature_result = InboundDelivery.SignatureResult.INVALID
    detail, _ = _masked(detail)
    if errors:
        errors, _ = redact_data(json.loads(json.dumps(errors)))
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


# Each space-separated entry of `webhook-signature` is `v<n>,<base64 signature>`.
_SIGNATURE_ENTRY = re.compile(r"v[0-9]+,[A-Za-z0-9+/]+={0,2}")


def _is_malformed_signature(headers: dict[str, str]) -> bool:
    if not (headers.get("webhook-id") and headers.get("webhook-timestamp")):
        return False  # the library names missing headers
    entries = headers.get("webhook-signature", "").split()
    return bool(entries) and not all(map(_SIGNATURE_ENTRY.fullmatch, entries))


def _verify(
    raw: str, headers: dict[str, str], secrets: list[str]
) -> tuple[bool, str, str]:
    """Check a Standard Webhooks signature against every active secret (rotation).

    A stored secret that cannot be decoded is skipped: an older secret that still
    matches keeps working, and a bad one never turns a delivery into a 500.
    """
    if not secrets:
        return False, "no_active_secret", "The connection has no active webhook secret."
    headers = {name.lower(): value for name, value in headers.items()}
    if _is_malformed_signature(headers):
        return (
            False,
            "malformed_signature_header",
            "Each webhook-signature entry must be v<n>,<base64 signature>.",
        )
    reason = "no_usable_secret"
    detail = "None of the connection's active webhook secrets can be decoded."
    for secret in secrets:
        webhook = webhook_for(secret)
        if webhook is None:
            continue
        try:
            webhook.verify(raw, headers, json_parse=False)
            return True, "", ""
        except WebhookVerificationError as exc:
            detail = str(exc)
            reason = _VERIFY_REASONS.get(detail, "signature_invalid")
            if reason != "signature_mismatch":
                break  # header and timestamp problems are the same for every secret
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
    400: OpenApiResponse(
        _REJECTED,
        description=(
            "`invalid_encoding` (not UTF-8), `invalid_json` (not JSON; NaN or "
            "Infinity; a \\u0000 or lone surrogate escape), `too_deep` (nested "
            "deeper than 32 levels), `invalid_webhook_id` (over 200 characters, not "
            "visible ASCII, or shaped like a card number), `invalid_shape` (a field "
            "the pipeline reads has the wrong type, range or format: `errors` names "
            "it, nested like `data.tax_amount`)."
        ),
    ),
    401: OpenApiResponse(
        _REJECTED,
        description=(
            "`missing_signature_headers`, `malformed_signature_header`, "
            "`invalid_timestamp`, `timestamp_out_of_range` (outside ±5 minutes), "
            "`signature_mismatch`, `no_active_secret`, `no_usable_secret`."
        ),
    ),
    404: OpenApiResponse(
        _REJECTED, description="`unknown_connection`: unknown or inactive connection."
    ),
    413: OpenApiResponse(_REJECTED, description="`body_too_large`: over 256 KiB."),
}
_SILENT_REJECTIONS = {
    **_REJECTIONS,
    400: OpenApiResponse(
        _REJECTED,
        description=(
            "`invalid_form` (not a form body) or `invalid_shape` (no TRANSACTIONID "
            "of 1-20 ASCII digits, or one shaped like a card number)."
        ),
    ),
}
_SILENT_REJECTIONS.pop(401)


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
        webhook_id = request.headers.get("webhook-id", "")
        delivery = _new_delivery(
            request, slug, connection, kind=InboundDelivery.Kind.WEBHOOK
        )
        # The event id as stored: card-number runs inside an id are masked with
        # letters keyed on the number, so two ids never become one. An id that is
        # nothing but a card number, or too long to keep whole, is refused below;
        # the row keeps a masked, cut copy.
        event_id, id_has_card = mask_card_numbers(_storable(webhook_id), keyed=True)
        delivery.webhook_id = event_id[:200]
        delivery.contains_card_data = delivery.contains_card_data or id_has_card

        if connection is None or not connection.is_active:
            return _reject(
                delivery,
                404,
                "unknown_connection",
                "No active PayTrace connection at this address.",
            )

        length = _content_length(request)
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
            delivery.body, _ = _masked(raw_bytes.decode("utf-8", errors="replace"))
            return _reject(delivery, 400, "invalid_encoding", "The body is not UTF-8.")
        delivery.body, body_has_card = _masked(raw)
        delivery.contains_card_data = delivery.contains_card_data or body_has_card

        ok, reason, detail = _verify(raw, dict(request.headers), secrets)
        if not ok:
            return _reject(delivery, 401, reason, detail)
        delivery.signature_result = InboundDelivery.SignatureResult.VALID

        if problem := webhook_id_problem(webhook_id):
            return _reject(delivery, 400, "invalid_webhook_id", problem)
        try:
            body = load_json(raw)
        except BodyError as exc:
            return _reject(delivery, 400, exc.reason, exc.detail)
        data, errors = validate_event(body, connection.time_zone)
        if errors:
            fields = error_fields(errors)
            return _reject(
                delivery,
                400,
                "invalid_shape",
                f"Invalid fields: {', '.join(fields)}.",
                errors=errors,
            )

        payload, payload_has_card = redact_data(body)
        has_card = body_has_card or payload_has_card or id_has_card
        delivery.contains_card_data = delivery.contains_card_data or has_card
        return self._accept(delivery, connection, data, payload, has_card)

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
                # A duplicate only if the event is there: any other refusal by the
                # database is ours, and is recorded as such rather than mislabelled.
                delivery.event = Event.objects.filter(
                    connection=connection, event_id=delivery.webhook_id
                ).first()
                if delivery.event is None:
                    logger.exception(
                        "webhook event not stored slug=%s", delivery.connection_slug
                    )
                    return _reject(
                        delivery,
                        500,
                        "event_not_stored",
                        "The event could not be stored; retry later.",
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
    parser_classes = [FormParser, MultiPartParser]
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
            **_SILENT_REJECTIONS,
        },
        auth=[],
    )
    def post(self, request: Request, slug: str) -> Response:
        connection = Connection.objects.filter(
            slug=slug, kind=Connection.Kind.PAYTRACE
        ).first()
        delivery = _new_delivery(
            request,
            slug,
            connection,
            kind=InboundDelivery.Kind.SILENT_POST,
            signature_result=InboundDelivery.SignatureResult.UNSIGNED,
        )
        if connection is None or not connection.is_active:
            return _reject(
                delivery,
                404,
                "unknown_connection",
                "No active PayTrace connection at this address.",
            )
        length = _content_length(request)
        if length > settings.WEBHOOK_MAX_BODY_BYTES:
            delivery.body_size = length
            return _reject(delivery, 413, "body_too_large", "Body too large.")
        raw_bytes = request.body
        delivery.body_size = len(raw_bytes)
        text = raw_bytes.decode("utf-8", errors="replace")
        if request.content_type == "application/x-www-form-urlencoded":
            # Kept decoded: `+` and percent-escapes would hide a card number from
            # the masking (`3761+1114+…`, `%34%31…`).
            text = unquote_plus(text)
        body, body_has_card = _masked(text)
        delivery.body = body
        delivery.contains_card_data = delivery.contains_card_data or body_has_card
        if len(raw_bytes) > settings.WEBHOOK_MAX_BODY_BYTES:
            return _reject(delivery, 413, "body_too_large", "Body too large.")
        try:
            parm_list = request.POST.get("parmList", "")
        except (APIException, SuspiciousOperation, ValueError):
            return _reject(
                delivery,
                400,
                "invalid_form",
                "Send parmList as application/x-www-form-urlencoded or multipart form data.",
            )
        fields = parse_silent_post(parm_list)
        transaction_id = fields.get("TRANSACTIONID", "").strip()
        if problem := silent_post_id_problem(transaction_id):
            return _reject(delivery, 400, "invalid_shape", problem)
        delivery.webhook_id = f"silent-post:{transaction_id}"
        delivery.response_status = 202
        with transaction.atomic():
            delivery.save()
            processing.queue("confirm_silent_post", delivery.pk)
        return Response(
            {"status": "queued", "delivery": delivery.pk},
            status=status.HTTP_202_ACCEPTED,
        )
