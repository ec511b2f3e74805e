"""Build PayTrace records and Standard-Webhooks-signed deliveries, as a sender would."""

import json
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from django.test import Client
from standardwebhooks.webhooks import Webhook

DEFAULT_SECRET = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0xMjM0NTY3ODkw"

_next_id = [600000000]


def paytrace_record(**overrides) -> dict:
    """A PayTrace v1 export record, field names exactly as the export returns them."""
    _next_id[0] += 1
    record = {
        "transaction_id": _next_id[0],
        "transaction_type": "SALE",
        "amount": Decimal("125.50"),
        "tax_amount": "0.00",
        "invoice_id": "10001",
        "customer_reference_id": "PO-7781",
        "description": "",
        "customer_id": "",
        "receipt_emailed_to": "",
        "credit_card": {
            "masked_number": "************1111",
            "expiration_month": 9,
            "expiration_year": 28,
        },
        "billing_address": {
            "name": "Ada Buyer",
            "street_address": "1 Main St",
            "street_address2": "",
            "city": "Spokane",
            "state": "WA",
            "zip": "99201",
            "country": "US",
        },
        "approval_code": "ABC123",
        "approval_message": "  EXACT MATCH - Approved and completed",
        "avs_response": "Full Exact Match",
        "csc_response": "Match",
        "status_code": "Y",
        "status_message": "Pending Settlement",
        "created": {
            "through": "API",
            "at": paytrace_time(datetime.now(UTC)),
            "by": "apiuser",
            "from_ip": "203.0.113.9",
        },
        "settled": "",
    }
    record.update(overrides)
    return record


def event_body(
    event_type: str, record: dict, occurred_at: datetime | None = None
) -> str:
    """Serialise like PayTrace: amounts as JSON numbers, never through float."""
    body = {
        "type": event_type,
        "occurred_at": (occurred_at or datetime.now(UTC))
        .isoformat()
        .replace("+00:00", "Z"),
        "data": record,
    }
    text = json.dumps(_marked(body))
    return re.sub(r'"__decimal__(-?[0-9.]+)__"', r"\1", text)


def _marked(value):  # noqa: ANN001, ANN202
    if isinstance(value, Decimal):
        return f"__decimal__{value}__"
    if isinstance(value, dict):
        return {k: _marked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_marked(v) for v in value]
    return value


def sign(
    body: str,
    secret: str = DEFAULT_SECRET,
    msg_id: str | None = None,
    timestamp: datetime | None = None,
) -> dict:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = timestamp or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, timestamp, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
    }


def post_event(client: Client, slug: str, body: str, headers: dict):  # noqa: ANN201
    return client.post(
        f"/webhooks/paytrace/{slug}/",
        data=body,
        content_type="application/json",
        headers=headers,
    )


def paytrace_time(when: datetime, time_zone: str = "America/Los_Angeles") -> str:
    """Format a moment the way PayTrace writes it: local, unpadded, no zone."""
    from zoneinfo import ZoneInfo

    return when.astimezone(ZoneInfo(time_zone)).strftime("%-m/%-d/%Y %-I:%M:%S %p")
