"""`POST /webhooks/storefront/<slug>/`: Shopify-style order webhooks.

Check → store → queue → answer, like the PayTrace webhook (`integrations.api`): every
request is an `InboundDelivery` (card data masked before anything is stored); a body
whose HMAC-SHA256 (base64, `X-Shopify-Hmac-Sha256`) matches one of the connection's
active webhook secrets, with a usable webhook id, topic and shape, becomes one
`StorefrontEvent` per `X-Shopify-Webhook-Id`; a worker processes it
(`integrations.storefront.flow.process_event`).
"""

import base64
import hashlib
import hmac
import logging
from typing import Any

from django.db import IntegrityError, transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api import (
    WEBHOOK_REJECTIONS,
    RawBodyParser,
    Refused,
    read_text_body,
    reject,
)
from integrations.inbound import BodyError, load_json, webhook_id_problem
from integrations.models import Connection, InboundDelivery, ReviewItem
from integrations.models.storage import storable_text
from integrations.models.storefront import StorefrontEvent
from integrations.redaction import redact_data
from integrations.storefront.tasks import queue_task
from mappings.storefront import OrderShapeError, parse_order, parse_refund

logger = logging.getLogger(__name__)

ORDER_TOPICS = ("orders/create", "orders/paid", "orders/updated", "orders/cancelled")
REFUND_TOPIC = "refunds/create"
TOPICS = (*ORDER_TOPICS, REFUND_TOPIC)
_TOPIC_MAX = 60


def signature_for(raw: bytes, secret: str) -> str:
    """The `X-Shopify-Hmac-Sha256` of a body: HMAC-SHA256 with the secret, base64."""
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _check_signature(raw: bytes, given: str, secrets: list[str]) -> None:
    if not secrets:
        raise Refused(
            401, "no_active_secret", "The connection has no active webhook secret."
        )
    if not given:
        raise Refused(
            401,
            "missing_signature_headers",
            "Sign the raw body with HMAC-SHA256 and send it, base64, in "
            "X-Shopify-Hmac-Sha256.",
        )
    # Every secret is compared (rotation), each in constant time.
    matches = [
        hmac.compare_digest(signature_for(raw, secret).encode(), given.encode())
        for secret in secrets
        if secret
    ]
    if not any(matches):
        raise Refused(
            401,
            "signature_mismatch",
            "X-Shopify-Hmac-Sha256 does not match the body for any active secret.",
        )


def _check_connection(connection: Connection | None) -> Connection:
    if connection is None or not connection.is_active:
        raise Refused(
            404,
            "unknown_connection",
            "No active storefront connection at this address.",
        )
    return connection


def _shape_errors(topic: str, body: Any) -> dict[str, str]:
    try:
        if topic in ORDER_TOPICS:
            parse_order(body)
        elif topic == REFUND_TOPIC:
            parse_refund(body)
    except OrderShapeError as exc:
        return exc.errors
    return {}


def _checked_event(
    request: Request, delivery: InboundDelivery, connection: Connection | None
) -> StorefrontEvent:
    """The event a request carries once every check passed (each failure raises
    `Refused`); the delivery keeps what was read, masked."""
    webhook_id = request.headers.get("X-Shopify-Webhook-Id", "").strip()
    id_has_card = delivery.keep_webhook_id(webhook_id)
    connection = _check_connection(connection)
    raw_bytes, raw, body_has_card = read_text_body(request, delivery)

    _check_signature(
        raw_bytes,
        request.headers.get("X-Shopify-Hmac-Sha256", "").strip(),
        connection.active_webhook_secrets(),
    )
    delivery.signature_result = InboundDelivery.SignatureResult.VALID
    if not webhook_id:
        raise Refused(
            400, "invalid_webhook_id", "Send the delivery's id in X-Shopify-Webhook-Id."
        )
    if problem := webhook_id_problem(webhook_id):
        raise Refused(400, "invalid_webhook_id", problem)
    topic = request.headers.get("X-Shopify-Topic", "").strip()
    if not topic or len(topic) > _TOPIC_MAX or not topic.isascii():
        raise Refused(
            400, "invalid_topic", "Send the topic in X-Shopify-Topic (orders/create…)."
        )
    try:
        body = load_json(raw)
    except BodyError as exc:
        raise Refused(400, exc.reason, exc.detail) from None
    if not isinstance(body, dict):  # `null`, a list, a number: whatever the topic
        raise Refused(400, "invalid_shape", "The body must be a JSON object.")
    if errors := _shape_errors(topic, body):
        fields = ", ".join(sorted(errors))
        raise Refused(400, "invalid_shape", f"Invalid fields: {fields}.", errors)
    payload, payload_has_card = redact_data(body)
    has_card = body_has_card or id_has_card or payload_has_card
    delivery.contains_card_data = delivery.contains_card_data or has_card
    return StorefrontEvent(
        connection=connection,
        webhook_id=delivery.webhook_id,
        topic=topic,
        payload=payload,
        contains_card_data=has_card,
        state=StorefrontEvent.State.QUEUED
        if topic in TOPICS
        else StorefrontEvent.State.IGNORED,
        outcome="" if topic in TOPICS else f"topic {topic} is not used",
        received_at=delivery.received_at,
    )


def _store_and_queue(delivery: InboundDelivery, event: StorefrontEvent) -> Response:
    """Store the event once per webhook id and queue it, with its delivery."""
    with transaction.atomic():
        stored = StorefrontEvent.objects.filter(
            connection=event.connection, webhook_id=event.webhook_id
        ).first()
        created = stored is None
        if created:
            try:
                with transaction.atomic():
                    event.save()
                stored = event
            except IntegrityError:  # a concurrent delivery of the same id won
                stored = StorefrontEvent.objects.get(
                    connection=event.connection, webhook_id=event.webhook_id
                )
                created = False
        assert stored is not None
        delivery.response_status = 202 if created and stored.state == "queued" else 200
        delivery.save()
        if not created:
            return Response({"status": "duplicate", "event": stored.pk}, status=200)
        if stored.delivery_id is None:
            StorefrontEvent.objects.filter(pk=stored.pk).update(delivery=delivery)
        if stored.contains_card_data:
            ReviewItem.objects.create(
                kind=ReviewItem.Kind.CARD_DATA,
                reason=storable_text(
                    f"Storefront webhook {stored.webhook_id} from "
                    f"{stored.connection.slug} carried card data (masked before "
                    "storage). Ask the storefront to stop sending it."
                ),
            )
        if stored.state == StorefrontEvent.State.IGNORED:
            logger.info("storefront webhook ignored topic=%s", stored.topic)
            return Response({"status": "ignored", "event": stored.pk}, status=200)
        queue_task("process_event", stored.pk)
    return Response({"status": "queued", "event": stored.pk}, status=202)


class StorefrontWebhookView(APIView):
    """`POST /webhooks/storefront/<slug>/`: a signed storefront order webhook."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes = [RawBodyParser]
    throttle_classes: list = []

    @extend_schema(
        summary="Receive a signed storefront order webhook (Shopify style)",
        description=(
            "HMAC-SHA256 of the raw body with the connection's webhook secret, base64, "
            "in `X-Shopify-Hmac-Sha256`; topic in `X-Shopify-Topic` (`orders/create`, "
            "`orders/paid`, `orders/cancelled`, `refunds/create`); a repeated "
            "`X-Shopify-Webhook-Id` is stored once."
        ),
        request={"application/json": OpenApiTypes.OBJECT},
        responses={
            202: OpenApiResponse(OpenApiTypes.OBJECT, description="Stored and queued."),
            200: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="A repeated webhook id, or a topic the portal does not use.",
            ),
            **WEBHOOK_REJECTIONS,
        },
        auth=[],
    )
    def post(self, request: Request, slug: str) -> Response:
        connection = Connection.objects.filter(
            slug=slug, kind=Connection.Kind.STOREFRONT, is_active=True
        ).first()
        delivery = InboundDelivery.from_request(
            request, slug, connection, InboundDelivery.Kind.WEBHOOK
        )
        try:
            event = _checked_event(request, delivery, connection)
        except Refused as refusal:
            return reject(delivery, refusal)
        return _store_and_queue(delivery, event)
