"""The PayTrace v1 JSON API, emulated: OAuth tokens, keyed sales, voids, refunds, the
transaction exports and the batch exports.

Every call is a POST. `/oauth/token` takes a form; `/v1/...` takes JSON with a bearer
token and an `integrator_id`. Failures answer HTTP 400 with `success: false`, a
`response_code` and an `errors` object keyed by PayTrace error code; declines are
`success: false` with response code 102 and still carry a `transaction_id`.

Sandbox rules: a card number ending in `0002` or an amount ending in `.13` is
declined. `"notify": false` in a body makes the change without sending an event.
The card number and CSC are checked here and never stored, logged or queued.

The vault, the hosted fields, sales by customer and recurring billing are in
`vault_views` and `protect_views` (docs/paytrace-sandbox.md describes them all).
"""

import base64
import json
import re
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from functools import wraps
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations.sandbox.logfilters import mark_expected_refusal
from integrations.sandbox.paytrace.cards import brand_of, is_luhn_valid
from integrations.sandbox.paytrace.models import (
    BATCH_NUMBER_OFFSET,
    BILLING_ADDRESS_KEYS,
    SHIPPING_ADDRESS_KEYS,
    TOKEN_LIFETIME_SECONDS,
    AccessToken,
    Batch,
    Transaction,
)
from integrations.sandbox.paytrace.records import dumps, format_gateway_time

# PayTrace's documented error codes. REQUEST_ERROR is the sandbox's own code for a
# malformed request (missing integrator_id, bad JSON, bad dates): PayTrace's code for
# those is not documented.
REQUEST_ERROR = "1"
INVALID_CARD_NUMBER = "35"
INVALID_EXPIRATION_MONTH = "43"
INVALID_EXPIRATION_YEAR = "44"
INVALID_AMOUNT = "51"
INVALID_TRANSACTION_ID = "58"
TRANSACTION_NOT_FOUND = "811"
REFUND_NOT_SETTLED = "817"
VOID_ALREADY_SETTLED = "818"

# An amount has at most this many digits before the point (a DecimalField(14, 2)).
MAX_AMOUNT_DIGITS = 11
DATE_PATTERN = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")

View = Callable[[HttpRequest, dict[str, Any]], HttpResponse]


def reply(payload: dict[str, Any], status: int = 200) -> HttpResponse:
    return HttpResponse(dumps(payload), status=status, content_type="application/json")


def error_reply(errors: dict[str, list[str]]) -> HttpResponse:
    return reply(
        {
            "success": False,
            "response_code": 1,
            "status_message": "One or more errors has occurred.",
            "errors": errors,
        },
        status=400,
    )


def auth_error(error: str, description: str) -> HttpResponse:
    return reply({"error": error, "error_description": description}, status=401)


def is_sandbox_user(request: HttpRequest) -> bool:
    """A valid bearer token, or basic auth with the sandbox API user's credentials."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return AccessToken.find_valid(credentials.strip()) is not None
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return False
    username, _, password = decoded.partition(":")
    return constant_time_compare(
        username, settings.SANDBOX_PAYTRACE_USERNAME
    ) and constant_time_compare(password, settings.SANDBOX_PAYTRACE_PASSWORD)


def v1_endpoint(view: View) -> Callable[[HttpRequest], HttpResponse]:
    """Check the bearer token, decode the JSON body and require `integrator_id`."""

    @csrf_exempt
    @require_POST
    @wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        access = AccessToken.find_valid(token) if scheme.lower() == "bearer" else None
        if access is None:
            return auth_error(
                "invalid_token", "The access token is invalid or expired."
            )
        request.api_user = access.username  # type: ignore[attr-defined]
        try:
            body = json.loads(request.body or b"{}", parse_float=Decimal)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return error_reply(
                {REQUEST_ERROR: ["The request body must be a JSON object."]}
            )
        if not str(body.get("integrator_id") or "").strip():
            return error_reply(
                {REQUEST_ERROR: ["Please provide a valid integrator_id."]}
            )
        return view(request, body)

    return wrapper


def read_amount(value: Any) -> Decimal | None:
    """Read a positive amount with at most two decimals, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    # A number too long for the context (`"9" * 400`) cannot be quantized: refuse it
    # before trying, rather than answer 500.
    if not amount.is_finite() or amount <= 0 or amount.adjusted() > MAX_AMOUNT_DIGITS:
        return None
    if amount != amount.quantize(Decimal("0.01")):
        return None
    return amount.quantize(Decimal("0.01"))


def read_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def read_text(body: dict[str, Any], key: str, max_length: int) -> str:
    value = body.get(key)
    return "" if value is None else str(value).strip()[:max_length]


def read_address(value: Any, keys: tuple[str, ...]) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {key: read_text(value, key, 100) for key in keys if value.get(key)}


def read_date(value: Any) -> date | None:
    match = DATE_PATTERN.match(str(value or "").strip())
    if not match:
        return None
    month, day, year = (int(part) for part in match.groups())
    try:
        return date(year, month, day)
    except ValueError:
        return None


def wants_events(body: dict[str, Any]) -> bool:
    return body.get("notify", True) is not False


def is_sandbox_decline(card_number: str, amount: Decimal) -> bool:
    return card_number.endswith("0002") or amount % 1 == Decimal("0.13")


def transaction_reply(txn: Transaction) -> dict[str, Any]:
    approved = txn.response_code in (101, 106)
    if txn.response_code == 106:
        message = "Your transaction was successfully refunded."
    elif approved:
        message = "Your transaction was successfully approved."
    else:
        message = "Your transaction was not approved. Declined"
    return {
        "success": approved,
        "response_code": txn.response_code,
        "status_message": message,
        "transaction_id": txn.transaction_id,
        "approval_code": txn.approval_code,
        "approval_message": txn.approval_message,
        "avs_response": txn.avs_response,
        "csc_response": txn.csc_response,
        "external_transaction_id": "",
        "masked_card_number": "x" * 12 + txn.card_last4,
    }


def export_reply(transactions: list[Transaction]) -> HttpResponse:
    return reply(
        {
            "success": True,
            "response_code": 1,
            "status_message": "Your request has been successfully completed.",
            "external_transaction_id": "",
            "transactions": [txn.as_record() for txn in transactions],
        }
    )


def not_found(transaction_id: Any) -> HttpResponse:
    return error_reply(
        {
            TRANSACTION_NOT_FOUND: [
                f"Transaction ID {transaction_id} could not be found."
            ]
        }
    )


def invalid_transaction_id() -> HttpResponse:
    return error_reply(
        {INVALID_TRANSACTION_ID: ["Please provide a valid Transaction ID."]}
    )


@csrf_exempt
@require_POST
def oauth_token(request: HttpRequest) -> HttpResponse:
    """Issue a bearer token for the sandbox API user (password grant)."""
    if request.POST.get("grant_type") != "password":
        return reply(
            {
                "error": "unsupported_grant_type",
                "error_description": "Only the password grant is supported.",
            },
            status=400,
        )
    username = request.POST.get("username", "")
    password = request.POST.get("password", "")
    if not (
        constant_time_compare(username, settings.SANDBOX_PAYTRACE_USERNAME)
        and constant_time_compare(password, settings.SANDBOX_PAYTRACE_PASSWORD)
    ):
        return auth_error(
            "invalid_grant",
            "The provided authorization grant is invalid, expired, revoked, does not "
            "match the redirection URI used in the authorization request, or was "
            "issued to another client.",
        )
    token, row = AccessToken.issue(username)
    return reply(
        {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_SECONDS,
            "created_at": int(row.created_at.timestamp()),
        }
    )


@v1_endpoint
def sale_keyed(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Approve or decline a keyed sale; store the last four digits only."""
    errors: dict[str, list[str]] = {}
    amount = read_amount(body.get("amount"))
    if amount is None:
        errors[INVALID_AMOUNT] = ["Please provide a valid Transaction Amount."]
    tax_amount = None
    if body.get("tax_amount") not in (None, ""):
        tax_amount = read_amount(body["tax_amount"])
        if tax_amount is None:
            errors.setdefault(INVALID_AMOUNT, []).append(
                "Please provide a valid Tax Amount."
            )
    card = body.get("credit_card")
    if not isinstance(card, dict):
        card = {}
    number = str(card.get("number") or "").replace(" ", "")
    if not is_luhn_valid(number):
        errors[INVALID_CARD_NUMBER] = ["Please provide a valid Credit Card Number."]
    month = read_int(card.get("expiration_month"))
    if month is None or not 1 <= month <= 12:
        errors[INVALID_EXPIRATION_MONTH] = ["Please provide a valid Expiration Month."]
    year = read_int(card.get("expiration_year"))
    if year is None or not (0 <= year <= 99 or 2000 <= year <= 2099):
        errors[INVALID_EXPIRATION_YEAR] = ["Please provide a valid Expiration Year."]
    if errors:
        return error_reply(errors)
    assert amount is not None and month is not None and year is not None
    billing = read_address(body.get("billing_address"), BILLING_ADDRESS_KEYS)
    approved = not is_sandbox_decline(number, amount)
    txn = Transaction.create_sale(
        approved=approved,
        notify=wants_events(body),
        amount=amount,
        tax_amount=tax_amount,
        invoice_id=read_text(body, "invoice_id", 100),
        customer_reference_id=read_text(body, "customer_reference_id", 100),
        description=read_text(body, "description", 255),
        customer_id=read_text(body, "customer_id", 100),
        email=read_text(body, "email", 254),
        card_last4=number[-4:],
        card_brand=brand_of(number),
        expiration_month=month,
        expiration_year=year % 100,
        billing_address=billing,
        shipping_address=read_address(
            body.get("shipping_address"), SHIPPING_ADDRESS_KEYS
        ),
        avs_response="Full Exact Match" if billing.get("zip") else "No Match",
        csc_response="Match" if body.get("csc") else "",
        created_by=request.api_user,  # type: ignore[attr-defined]
        created_from_ip=request.META.get("REMOTE_ADDR", ""),
    )
    if not approved:
        mark_expected_refusal(request)  # a decline: no "Bad Request" in the demo log
    return reply(transaction_reply(txn), status=200 if approved else 400)


@v1_endpoint
def export_by_id(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Return one transaction record in a one-element `transactions` list."""
    transaction_id = body.get("transaction_id")
    if Transaction.pk_for(transaction_id) is None and read_int(transaction_id) is None:
        return invalid_transaction_id()
    txn = Transaction.find(transaction_id)
    if txn is None:
        return not_found(transaction_id)
    return export_reply([txn])


def read_date_range(body: dict[str, Any]) -> tuple[date, date] | HttpResponse:
    """`start_date`..`end_date` (MM/DD/YYYY, inclusive), or PayTrace's error reply."""
    start, end = read_date(body.get("start_date")), read_date(body.get("end_date"))
    if start is None or end is None or end < start:
        return error_reply(
            {
                REQUEST_ERROR: [
                    "Please provide a valid start_date and end_date (MM/DD/YYYY)."
                ]
            }
        )
    return start, end


@v1_endpoint
def export_by_date_range(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Return the transactions created between two gateway-local dates, inclusive."""
    dates = read_date_range(body)
    if isinstance(dates, HttpResponse):
        return dates
    start, end = dates
    zone = ZoneInfo(settings.SANDBOX_PAYTRACE_TIME_ZONE)
    found = Transaction.objects.filter(
        created_at__gte=datetime.combine(start, time.min, tzinfo=zone),
        created_at__lt=datetime.combine(end + timedelta(days=1), time.min, tzinfo=zone),
    ).order_by("pk")
    if body.get("transaction_id"):
        found = found.filter(pk=Transaction.pk_for(body["transaction_id"]) or 0)
    if body.get("customer_id"):
        found = found.filter(customer_id=str(body["customer_id"]))
    if body.get("transaction_type"):
        found = filter_by_type(found, str(body["transaction_type"]).upper())
    if text := read_text(body, "including_text", 100):
        found = found.filter(matches_text(text))
    return export_reply(list(found))


def matches_text(text: str) -> Q:
    """The export's `including_text` filter: a free-text match on the references."""
    return (
        Q(invoice_id__icontains=text)
        | Q(customer_reference_id__icontains=text)
        | Q(description__icontains=text)
        | Q(customer_id__icontains=text)
        | Q(email__icontains=text)
        | Q(billing_address__name__icontains=text)
    )


def filter_by_type(found: QuerySet[Transaction], kind: str) -> QuerySet[Transaction]:
    """Apply the export's `transaction_type` filter values."""
    if kind == "VOID":
        return found.filter(response_code=109)
    if kind == "SETTLED":
        return found.filter(batch__isnull=False)
    if kind == "PENDING":
        return found.filter(status_code=Transaction.PENDING_SETTLEMENT_CODE)
    if kind == "DECLINED":
        return found.filter(response_code=102)
    # SALE, REFUND; AUTHORIZATION and STR/FWD never occur in the sandbox.
    return found.filter(transaction_type=kind)


@v1_endpoint
def void(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Void a transaction that is still pending settlement (else error 818)."""
    transaction_id = body.get("transaction_id")
    pk = Transaction.pk_for(transaction_id)
    if pk is None:
        return invalid_transaction_id()
    with transaction.atomic():
        txn = Transaction.objects.select_for_update().filter(pk=pk).first()
        if txn is None:
            return not_found(transaction_id)
        if txn.is_settled():
            return error_reply(
                {
                    VOID_ALREADY_SETTLED: [
                        "The transaction has already settled and can not be voided. "
                        "Please refund it instead."
                    ]
                }
            )
        if not txn.is_pending_settlement():
            # A declined sale moved no money; a voided one is voided already.
            state = "was declined" if txn.is_declined() else "is voided already"
            return error_reply(
                {
                    INVALID_TRANSACTION_ID: [
                        f"Transaction ID {txn.transaction_id} {state}: "
                        "there is nothing to void."
                    ]
                }
            )
        txn.void(notify=wants_events(body))
    return reply(
        {
            "success": True,
            "response_code": 109,
            "status_message": "Your transaction was successfully voided.",
            "transaction_id": txn.transaction_id,
        }
    )


@v1_endpoint
def refund_for_transaction(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Refund a settled sale in full or in part as a new REFUND transaction."""
    transaction_id = body.get("transaction_id")
    pk = Transaction.pk_for(transaction_id)
    if pk is None:
        return invalid_transaction_id()
    with transaction.atomic():
        txn = Transaction.objects.select_for_update().filter(pk=pk).first()
        if txn is None:
            return not_found(transaction_id)
        if not txn.is_settled():
            return error_reply(
                {
                    REFUND_NOT_SETTLED: [
                        "The transaction has not settled yet and can not be refunded. "
                        "Please void it instead."
                    ]
                }
            )
        refundable = txn.refundable_amount()
        amount: Decimal | None = refundable
        if body.get("amount") not in (None, ""):
            amount = read_amount(body["amount"])
        if amount is None or amount <= 0 or amount > refundable:
            return error_reply(
                {
                    INVALID_AMOUNT: [
                        f"Please provide a valid amount (at most {refundable})."
                    ]
                }
            )
        refund = txn.refund(
            amount,
            created_by=request.api_user,  # type: ignore[attr-defined]
            from_ip=request.META.get("REMOTE_ADDR", ""),
            notify=wants_events(body),
        )
    return reply(transaction_reply(refund))


@csrf_exempt
@require_POST
def settle(request: HttpRequest) -> HttpResponse:
    """Sandbox only: settle every approved, unsettled sale now.

    Needs the sandbox API user, as a bearer token from `oauth/token` (what a PayTrace
    client holds) or as HTTP basic credentials (what a test or demo harness has).

    `POST /sandbox/paytrace/_settle` (optional JSON body `{"notify": false}`) puts all
    sales with status `Y` into a new batch: their `status_code` and `status_message`
    become `GB<batch>`, `settled` gets the current time, and a `transaction.settled`
    event goes out for each. Answers `{"batch_number": <int or null>, "count": <int>}`;
    with nothing to settle no batch is made and `batch_number` is null.
    """
    if not is_sandbox_user(request):
        response = auth_error(
            "invalid_token",
            "Send a bearer token or the sandbox API user's credentials.",
        )
        response["WWW-Authenticate"] = 'Bearer realm="paytrace", Basic realm="paytrace"'
        return response
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        body = {}
    batch = Batch.settle_pending(
        notify=wants_events(body if isinstance(body, dict) else {})
    )
    if batch is None:
        return reply({"batch_number": None, "count": 0})
    return reply({"batch_number": batch.number, "count": batch.transactions.count()})


def batch_summary(batch: Batch) -> dict[str, Any]:
    """A batch summary. PayTrace's JSON names for these are unverified:
    these follow the legacy API's fields (number, date, counts and amounts)."""
    sales = [
        t
        for t in batch.transactions.all()
        if t.transaction_type == Transaction.Type.SALE
    ]
    refunds = [
        t
        for t in batch.transactions.all()
        if t.transaction_type == Transaction.Type.REFUND
    ]
    sales_amount = sum((t.amount for t in sales), Decimal("0"))
    refund_amount = sum((t.amount for t in refunds), Decimal("0"))
    return {
        "batch_number": batch.number,
        "batch_date": format_gateway_time(batch.settled_at),
        "transaction_count": len(sales) + len(refunds),
        "sales_count": len(sales),
        "sales_amount": sales_amount,
        "refund_count": len(refunds),
        "refund_amount": refund_amount,
        "net_amount": sales_amount - refund_amount,
    }


@v1_endpoint
def batches_export(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """Return summaries of the batches settled between two gateway-local dates."""
    dates = read_date_range(body)
    if isinstance(dates, HttpResponse):
        return dates
    start, end = dates
    zone = ZoneInfo(settings.SANDBOX_PAYTRACE_TIME_ZONE)
    batches = (
        Batch.objects.filter(
            settled_at__gte=datetime.combine(start, time.min, tzinfo=zone),
            settled_at__lt=datetime.combine(
                end + timedelta(days=1), time.min, tzinfo=zone
            ),
        )
        .prefetch_related("transactions")
        .order_by("pk")
    )
    return reply(
        {
            "success": True,
            "response_code": 1,
            "status_message": "Your request has been successfully completed.",
            "batches": [batch_summary(batch) for batch in batches],
        }
    )


@v1_endpoint
def batches_transaction_list(
    request: HttpRequest, body: dict[str, Any]
) -> HttpResponse:
    """Return the settled transactions of one batch."""
    raw: Any = body.get("batch_number")  # None raises TypeError below
    try:
        number = int(raw)
    except (TypeError, ValueError):
        return error_reply({REQUEST_ERROR: ["Please provide a valid batch_number."]})
    batch = Batch.objects.filter(pk=number - BATCH_NUMBER_OFFSET).first()
    if batch is None:
        return error_reply({REQUEST_ERROR: [f"Batch {number} was not found."]})
    return export_reply(list(batch.transactions.order_by("pk")))
