"""Small functions that build test rows with sensible defaults.

Each `make_*` takes the fields a test cares about as keyword arguments and fills in the
rest. They save to the database and return the row.
"""

import itertools
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from integrations.models import (
    Connection,
    Event,
    GatewayStatus,
    InboundDelivery,
    PaymentStatus,
    PaymentTransaction,
    Posting,
    ReviewItem,
    WebhookSecret,
)

PASSWORD = "correct-horse-battery-staple"

_numbers = itertools.count(1)

_BASE_URLS = {
    Connection.Kind.PAYTRACE: "https://api.sandbox.paytrace.example",
    Connection.Kind.SAGEPRO: "https://sagepro.example/api/v1",
    Connection.Kind.STOREFRONT: "https://shop.example",
}


def _next() -> int:
    return next(_numbers)


def make_connection(kind: str = Connection.Kind.PAYTRACE, **fields) -> Connection:
    """A connection of the given kind; a PayTrace one gets the default status map."""
    n = _next()
    fields.setdefault("name", f"{Connection.Kind(kind).label} {n}")
    fields.setdefault("slug", f"{kind}-{n}")
    fields.setdefault("base_url", _BASE_URLS[kind])
    if kind == Connection.Kind.PAYTRACE:
        fields.setdefault("username", "api-user")
    fields.setdefault("password", "test-password")
    return Connection.objects.create(kind=kind, **fields)


def make_webhook_secret(
    connection: Connection | None = None, **fields
) -> WebhookSecret:
    fields.setdefault("label", "current")
    fields.setdefault("secret", "whsec_dGVzdC13ZWJob29rLXNlY3JldC0xMjM0NTY3OA==")
    return WebhookSecret.objects.create(
        connection=connection or make_connection(), **fields
    )


def make_event(connection: Connection | None = None, **fields) -> Event:
    n = _next()
    fields.setdefault("event_id", f"evt_{n}")
    fields.setdefault("type", "transaction.approved")
    fields.setdefault("occurred_at", timezone.now())
    fields.setdefault("transaction_id", str(100000 + n))
    fields.setdefault("payload", {"transaction_id": fields["transaction_id"]})
    return Event.objects.create(connection=connection or make_connection(), **fields)


def make_delivery(connection: Connection | None = None, **fields) -> InboundDelivery:
    connection = connection or make_connection()
    fields.setdefault("connection_slug", connection.slug)
    fields.setdefault("signature_result", InboundDelivery.SignatureResult.VALID)
    fields.setdefault("headers", {"content-type": "application/json"})
    fields.setdefault("body", "{}")
    fields.setdefault("response_status", 202)
    return InboundDelivery.objects.create(connection=connection, **fields)


def make_transaction(
    connection: Connection | None = None, **fields
) -> PaymentTransaction:
    """A settled, paid $12.30 card sale unless told otherwise."""
    n = _next()
    fields.setdefault("transaction_id", str(200000 + n))
    fields.setdefault("transaction_type", "SALE")
    fields.setdefault("gateway_status", GatewayStatus.SETTLED)
    fields.setdefault("mapped_status", PaymentStatus.PAID)
    fields.setdefault("amount", Decimal("12.30"))
    fields.setdefault("currency", "USD")
    fields.setdefault("invoice_reference", f"INV-{1000 + n}")
    fields.setdefault("customer_reference", f"CUST-{n}")
    fields.setdefault("card_last4", "1111")
    fields.setdefault("card_brand", "VISA")
    fields.setdefault("created_at", timezone.now() - timedelta(hours=5))
    if fields["gateway_status"] == GatewayStatus.SETTLED:
        fields.setdefault("settled_at", timezone.now() - timedelta(hours=1))
    return PaymentTransaction.objects.create(
        connection=connection or make_connection(), **fields
    )


def make_posting(transaction: PaymentTransaction | None = None, **fields) -> Posting:
    """A pending cash receipt for the transaction, posting to a Sage Pro connection."""
    transaction = transaction or make_transaction()
    sagepro = fields.pop("sagepro", None) or make_connection(
        kind=Connection.Kind.SAGEPRO
    )
    kind = fields.setdefault("kind", Posting.Kind.CASH_RECEIPT)
    fields.setdefault(
        "idempotency_key",
        Posting.key_for(transaction.connection, transaction.transaction_id, kind),
    )
    if fields.get("state") == Posting.State.POSTED:
        fields.setdefault("posted_at", timezone.now())
    return Posting.objects.create(transaction=transaction, sagepro=sagepro, **fields)


def make_review_item(
    transaction: PaymentTransaction | None = None, **fields
) -> ReviewItem:
    """An open `unmatched` item for a (new) transaction unless told otherwise."""
    fields.setdefault("kind", ReviewItem.Kind.UNMATCHED)
    fields.setdefault("reason", "No open invoice matches the invoice reference.")
    return ReviewItem.objects.create(
        transaction=transaction or make_transaction(), **fields
    )


def make_user(group: str | None = None, **fields):
    """A staff user, optionally in one of the groups from `integrations.roles`."""
    fields.setdefault("username", f"user{_next()}")
    fields.setdefault("is_staff", True)
    password = fields.pop("password", PASSWORD)
    user = get_user_model().objects.create_user(password=password, **fields)
    if group:
        user.groups.add(_group(group))
    return user


def _group(name: str) -> Group:
    group = Group.objects.filter(name=name).first()
    if group is None:
        # A flushed database (transactional tests) may not have rerun post_migrate yet.
        from integrations.roles import ensure_groups

        ensure_groups(sender=None)
        group = Group.objects.get(name=name)
    return group
