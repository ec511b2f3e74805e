"""Webhook endpoints: store first, verify, queue, answer fast.

Nothing here calls PayTrace or Sage Pro. A valid new event is written together with
the django-q2 task that processes it, in one database transaction (the ORM broker
lives in the same database), so the two commit or roll back together.
"""

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
from integrations.models import Connection, Event, InboundDelivery
from integrations.models.storage import insert_row
from integrations.queueing import queue, record_and_queue

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


class Refused(Exception):
    """A delivery refused with an HTTP status and a machine-readable reason."""

    def __init__(
        self, code: int, reason: str, detail: str, errors: dict | None = None
    ) -> None:
        super().__init__(reason)
        self.code, self.reason, self.detail, self.errors = code, reason, detail, errors


def _content_length(request: HttpRequest) -> int:
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


def read_body(request: HttpRequest, delivery: InboundDelivery) -> bytes:
    """The body's bytes, read only when the declared length is within the limit.

    The delivery's `body_size` is the declared length when that is over the limit,
    else the length read, so one comparison with the limit covers both.
    """
    declared = _content_length(request)
    if declared > settings.WEBHOOK_MAX_BODY_BYTES:
        delivery.body_size = declared
        return b""
    raw = request.body
    delivery.body_size = len(raw)
    return raw


def read_text_body(
    request: Request, delivery: InboundDelivery
) -> tuple[bytes, str, bool]:
    """A webhook's raw body, its UTF-8 text, and whether it held a card number; kept
    on the delivery (masked) before anything else reads it. Too large or not UTF-8
    raises `Refused`."""
    raw_bytes = read_body(request, delivery)
    check_size(
        delivery, f"Bodies are limited to {settings.WEBHOOK_MAX_BODY_BYTES} bytes."
    )
    try:
        raw = raw_bytes.decode("utf-8")
    except UnicodeDecodeError:
        # Invalid bytes are dropped, not replaced: one planted inside a card number
        # (`4111\xff1111…`) must not hide it from the masking.
        delivery.keep_body(raw_bytes.decode("utf-8", errors="ignore"))
        raise Refused(400, "invalid_encoding", "The body is not UTF-8.") from None
    body_has_card = delivery.keep_body(raw)
    delivery.contains_card_data = delivery.contains_card_data or body_has_card
    return raw_bytes, raw, body_has_card


def check_size(delivery: InboundDelivery, detail: str) -> None:
    if delivery.body_size > settings.WEBHOOK_MAX_BODY_BYTES:
        raise Refused(413, "body_too_large", detail)


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
            slug,
            unusable,
        )
    if ttl:
        _webhook_cache[slug] = (now, connection, secrets)
    return connection, secrets


def reject(delivery: InboundDelivery, refusal: Refused) -> Response:
    """Record a refused delivery with its machine-readable reason, and answer it."""
    detail, errors = delivery.record_refusal(
        refusal.code, refusal.reason, refusal.detail, refusal.errors
    )
    logger.warning(
        "webhook rejected slug=%s status=%s reason=%s",
        delivery.connection_slug,
        refusal.code,
        refusal.reason,
    )
    body: dict[str, Any] = {"status": "rejected", "reason": refusal.reason}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    return Response(body, status=refusal.code)


def _check_connection(connection: Connection | None) -> Connection:
    if connection is None or not connection.is_active:
        raise Refused(
            404, "unknown_connection", "No active PayTrace connection at this address."
        )
    return connection


# Each space-separated entry of `webhook-signature` is `v<n>,<base64 signature>`.
_SIGNATURE_ENTRY = re.compile(r"v[0-9]+,[A-Za-z0-9+/]+={0,2}")


def _is_malformed_signature(headers: dict[str, str]) -> bool:
    if not (headers.get("webhook-id") and headers.get("webhook-timestamp")):
        return False  # the library names missing headers
    entries = headers.get("webhook-signature", "").split()
    return bool(entries) and not all(map(_SIGNATURE_ENTRY.fullmatch, entries))


def _check_signature(raw: str, headers: dict[str, str], secrets: list[str]) -> None:
    """Check a Standard Webhooks signature against every active secret (rotation).

    A stored secret that cannot be decoded is skipped: an older secret that still
    matches keeps working, and a bad one never turns a delivery into a 500.
    """
    if not secrets:
        raise Refused(
            401, "no_active_secret", "The connection has no active webhook secret."
        )
    headers = {name.lower(): value for name, value in headers.items()}
    if _is_malformed_signature(headers):
        raise Refused(
            401,
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
            return
        except WebhookVerificationError as exc:
            detail = str(exc)
            reason = _VERIFY_REASONS.get(detail, "signature_invalid")
            if reason != "signature_mismatch":
                break  # header and timestamp problems are the same for every secret
    raise Refused(401, reason, detail)


REJECTED_ANSWER = inline_serializer(
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
WEBHOOK_REJECTIONS = {
    400: OpenApiResponse(
        REJECTED_ANSWER,
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
        REJECTED_ANSWER,
        description=(
            "`missing_signature_headers`, `malformed_signature_header`, "
            "`invalid_timestamp`, `timestamp_out_of_range` (outside ±5 minutes), "
            "`signature_mismatch`, `no_active_secret`, `no_usable_secret`."
        ),
    ),
    404: OpenApiResponse(
        REJECTED_ANSWER,
        description="`unknown_connection`: unknown or inactive connection.",
    ),
    413: OpenApiResponse(
        REJECTED_ANSWER, description="`body_too_large`: over 256 KiB."
    ),
}
_SILENT_REJECTIONS = {
    **WEBHOOK_REJECTIONS,
    400: OpenApiResponse(
        REJECTED_ANSWER,
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
            **WEBHOOK_REJECTIONS,
        },
        auth=[],
    )
    def post(self, request: Request, slug: str) -> Response:
        connection, secrets = _webhook_connection(slug)
        delivery = InboundDelivery.from_request(
            request, slug, connection, InboundDelivery.Kind.WEBHOOK
        )
        try:
            event = _checked_event(request, delivery, connection, secrets)
        except Refused as refusal:
            return reject(delivery, refusal)
        return _store_and_queue(delivery, event)


def _checked_event(
    request: Request,
    delivery: InboundDelivery,
    connection: Connection | None,
    secrets: list[str],
) -> Event:
    """The event a webhook request carries, once every check has passed (each
    failure raises `Refused`); the delivery keeps what was read, masked."""
    webhook_id = request.headers.get("webhook-id", "")
    id_has_card = delivery.keep_webhook_id(webhook_id)
    connection = _check_connection(connection)
    _, raw, body_has_card = read_text_body(request, delivery)

    _check_signature(raw, dict(request.headers), secrets)
    delivery.signature_result = InboundDelivery.SignatureResult.VALID

    if problem := webhook_id_problem(webhook_id):
        raise Refused(400, "invalid_webhook_id", problem)
    try:
        body = load_json(raw)
    except BodyError as exc:
        raise Refused(400, exc.reason, exc.detail) from None
    data, errors = validate_event(body, connection.time_zone)
    if errors:
        fields = ", ".join(error_fields(errors))
        raise Refused(400, "invalid_shape", f"Invalid fields: {fields}.", errors)
    event = Event.from_delivery(
        delivery, data, body, has_card=body_has_card or id_has_card
    )
    delivery.contains_card_data = (
        delivery.contains_card_data or event.contains_card_data
    )
    return event


def _store_and_queue(delivery: InboundDelivery, event: Event) -> Response:
    """Store the event and queue it, with the delivery that points at it, in one
    transaction; a repeat of its id is stored as a delivery of the stored event."""
    with transaction.atomic():
        try:
            stored, created = record_and_queue(event)
        except IntegrityError:
            # Not a repeat: any other refusal by the database is ours, and is
            # recorded as such rather than mislabelled.
            logger.exception(
                "webhook event not stored slug=%s", delivery.connection_slug
            )
            return reject(
                delivery,
                Refused(
                    500,
                    "event_not_stored",
                    "The event could not be stored; retry later.",
                ),
            )
        delivery.event = stored
        delivery.response_status = 202 if created else 200
        insert_row(delivery)
        if not created:
            return Response(
                {"status": "duplicate", "event": stored.pk}, status=status.HTTP_200_OK
            )
        if stored.contains_card_data:
            stored.open_card_data_review()
    logger.info(
        "webhook queued event=%s type=%s connection=%s",
        stored.pk,
        stored.type,
        stored.connection.slug,
    )
    return Response(
        {"status": "queued", "event": stored.pk}, status=status.HTTP_202_ACCEPTED
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
        delivery = InboundDelivery.from_request(
            request,
            slug,
            connection,
            InboundDelivery.Kind.SILENT_POST,
            signature_result=InboundDelivery.SignatureResult.UNSIGNED,
        )
        try:
            delivery.webhook_id = _checked_silent_post(request, delivery, connection)
        except Refused as refusal:
            return reject(delivery, refusal)
        delivery.response_status = 202
        with transaction.atomic():
            delivery.save()
            queue("confirm_silent_post", delivery.pk)
        return Response(
            {"status": "queued", "delivery": delivery.pk},
            status=status.HTTP_202_ACCEPTED,
        )


def _checked_silent_post(
    request: Request, delivery: InboundDelivery, connection: Connection | None
) -> str:
    """The id a silent post is recorded under, once its form has been read (each
    failure raises `Refused`); the delivery keeps the body, masked."""
    _check_connection(connection)
    raw_bytes = read_body(request, delivery)
    text = raw_bytes.decode("utf-8", errors="ignore")  # see _checked_event
    if request.content_type == "application/x-www-form-urlencoded":
        # Kept decoded: `+` and percent-escapes would hide a card number from
        # the masking (`3761+1114+…`, `%34%31…`).
        text = unquote_plus(text)
    body_has_card = delivery.keep_body(text)
    delivery.contains_card_data = delivery.contains_card_data or body_has_card
    check_size(delivery, "Body too large.")
    try:
        parm_list = request.POST.get("parmList", "")
    except (APIException, SuspiciousOperation, ValueError):
        raise Refused(
            400,
            "invalid_form",
            "Send parmList as application/x-www-form-urlencoded or multipart form data.",
        ) from None
    fields = parse_silent_post(parm_list)
    transaction_id = fields.get("TRANSACTIONID", "").strip()
    if problem := silent_post_id_problem(transaction_id):
        raise Refused(400, "invalid_shape", problem)
    return f"silent-post:{transaction_id}"
