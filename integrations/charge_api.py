"""`POST /api/payments/charge` and `GET /api/payments/charges/<reference>` (issue 15).

Charge a Sage Pro invoice on a card on file, named by its PayTrace vault id. The view
checks the caller and the input, then `integrations.charging.request_charge` does the
work (docs/charging.md). The body is never logged or stored: only the charge the
service records from it.

Answers: 201 a new approved charge; 200 a replay of the same key and body; 409 the
key with another body; 402 declined (or refused by PayTrace: nothing charged); 202 the
outcome is being looked up (read it later at `Location`); 400 a missing or bad
`Idempotency-Key` or a body that is not a JSON object; 404 no card with that vault id;
422 anything else wrong with the body, as `{"errors": {field: [message]}}`.
"""

import json
from decimal import Decimal
from typing import Any

from django.urls import path, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations import charging
from integrations.models.cards import CardOnFile
from integrations.models.charges import Charge
from portal.auth import HasScope
from portal.tokens import Scope

KEY_HEADER = "Idempotency-Key"
FIELDS = ("customer_id", "invno", "amount", "confirm_over_balance")


class CanCharge(permissions.BasePermission):
    """Signed in (a token) and holding `integrations.add_charge`."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(
            user and user.is_authenticated and user.has_perm("integrations.add_charge")
        )


class CanViewCharges(permissions.BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(
            user
            and user.is_authenticated
            and (
                user.has_perm("integrations.view_charge")
                or user.has_perm("integrations.add_charge")
            )
        )


class ChargeRequestSerializer(serializers.Serializer):
    """The body (for the schema; the view reads it itself, strictly)."""

    customer_id = serializers.CharField(
        help_text="The card's PayTrace vault customer id."
    )
    invno = serializers.CharField(help_text="The Sage Pro invoice number.")
    amount = serializers.CharField(
        help_text='Dollars and cents as a string ("12.34"); a JSON number is refused '
        "(a float loses cents)."
    )
    confirm_over_balance = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Required true to charge more than the invoice's balance.",
    )


class ChargeCardSerializer(serializers.Serializer):
    brand = serializers.CharField()
    last4 = serializers.CharField()
    expiry = serializers.CharField(help_text="MM/YY")


class ChargeSerializer(serializers.Serializer):
    """A charge as the API shows it (no card number: the portal has none)."""

    reference = serializers.CharField()
    state = serializers.ChoiceField(choices=Charge.State.choices)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    currency = serializers.CharField()
    invno = serializers.CharField()
    custno = serializers.CharField()
    customer_id = serializers.CharField()
    transaction_id = serializers.CharField()
    approval_code = serializers.CharField()
    decline_reason = serializers.CharField()
    decline_category = serializers.CharField()
    error = serializers.CharField()
    card = ChargeCardSerializer()
    invoice_balance = serializers.DecimalField(
        max_digits=14, decimal_places=2, allow_null=True
    )
    balance_source = serializers.CharField()
    source = serializers.CharField()
    requested_by = serializers.CharField()
    payment_id = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    url = serializers.CharField()


class ErrorsSerializer(serializers.Serializer):
    errors = serializers.DictField(child=serializers.ListField())


def represent(charge: Charge) -> dict[str, Any]:
    card = charge.card
    declined = charge.state == Charge.State.DECLINED
    return ChargeSerializer(
        {
            "reference": charge.reference,
            "state": charge.state,
            "amount": charge.amount,
            "currency": "USD",
            "invno": charge.invno,
            "custno": charge.custno,
            "customer_id": card.vault_customer_id,
            "transaction_id": charge.transaction_id,
            "approval_code": charge.approval_code,
            "decline_reason": " ".join(charge.approval_message.split())
            if declined
            else "",
            "decline_category": charge.decline_category,
            "error": charge.error if not declined else "",
            "card": {"brand": card.brand, "last4": card.last4, "expiry": card.expiry},
            "invoice_balance": charge.invoice_balance,
            "balance_source": charge.balance_source,
            "source": charge.source,
            "requested_by": charge.requested_by_name,
            "payment_id": charge.payment_id,
            "created_at": charge.created_at,
            "finished_at": charge.finished_at,
            "url": detail_url(charge.reference),
        }
    ).data


def detail_url(reference: str) -> str:
    return reverse("charge-detail", args=[reference])


def errors(field: str, message: str, code: int) -> Response:
    return Response({"errors": {field: [charging.shown(message)]}}, status=code)


def answer(outcome: charging.ChargeOutcome) -> Response:
    charge = outcome.charge
    if charge.state == Charge.State.APPROVED:
        code = status.HTTP_200_OK if outcome.replayed else status.HTTP_201_CREATED
    elif charge.state in (Charge.State.DECLINED, Charge.State.FAILED):
        code = status.HTTP_402_PAYMENT_REQUIRED
    else:
        code = status.HTTP_202_ACCEPTED
    response = Response(represent(charge), status=code)
    if code == status.HTTP_202_ACCEPTED:
        response["Location"] = detail_url(charge.reference)
        response["Retry-After"] = "60"
    if outcome.replayed:
        response["Idempotent-Replayed"] = "true"
    return response


def read_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; ValueError (worded for the caller) otherwise."""
    try:
        data = json.loads(raw or b"null", parse_float=Decimal)
    except (ValueError, RecursionError):
        raise ValueError("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ValueError(
            'The body must be a JSON object: {"customer_id": …, "invno": …, '
            '"amount": "12.34"}.'
        )
    return data


def read_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Check each field's type; raise ChargeRefused naming the first wrong one."""
    unknown = sorted(str(name)[:40] for name in data if name not in FIELDS)
    if unknown:
        raise charging.ChargeRefused(
            f"Unknown field(s): {', '.join(unknown)}; send only {', '.join(FIELDS)}.",
            "non_field_errors",
        )
    for name in ("customer_id", "invno"):
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise charging.ChargeRefused(f"{name} is required, as a string.", name)
    amount = data.get("amount")
    if isinstance(amount, Decimal):  # a JSON number with a fraction
        raise charging.ChargeRefused(
            'Send the amount as a string ("12.34"), not a JSON number: a float '
            "loses cents.",
            "amount",
        )
    if amount is None:
        raise charging.ChargeRefused(
            'amount is required, as a string ("12.34").', "amount"
        )
    confirm = data.get("confirm_over_balance", False)
    if not isinstance(confirm, bool):
        raise charging.ChargeRefused(
            "confirm_over_balance must be true or false.", "confirm_over_balance"
        )
    return {
        "customer_id": data["customer_id"].strip(),
        "invno": data["invno"].strip(),
        "amount": charging.read_amount(amount),
        "confirm_over_balance": confirm,
    }


def find_card(customer_id: str) -> CardOnFile | None:
    """The card with this vault id (an active one first, if two connections have it)."""
    if len(customer_id) > 50:
        return None
    return (
        CardOnFile.objects.filter(vault_customer_id=customer_id)
        .select_related("paytrace", "sagepro")
        .order_by("state", "-created_at")  # "active" sorts before "removed"
        .first()
    )


class ChargeView(APIView):
    permission_classes = [HasScope, CanCharge]
    required_scopes = (Scope.CHARGES_CREATE,)

    @extend_schema(
        summary="Charge an invoice on a card on file",
        request=ChargeRequestSerializer,
        parameters=[
            OpenApiParameter(
                KEY_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=True,
                description="Your unique key for this charge (printable ASCII, at "
                "most 200 characters, no card data). Sending it again returns the "
                "same charge and charges nothing new.",
            )
        ],
        responses={
            201: ChargeSerializer,
            200: OpenApiResponse(ChargeSerializer, "A replay of the same key and body"),
            202: OpenApiResponse(ChargeSerializer, "Outcome unknown, being looked up"),
            400: ErrorsSerializer,
            402: OpenApiResponse(ChargeSerializer, "Declined, or refused by PayTrace"),
            404: ErrorsSerializer,
            409: ErrorsSerializer,
            422: ErrorsSerializer,
        },
    )
    def post(self, request: Request) -> Response:
        try:
            key = charging.check_key(request.headers.get(KEY_HEADER))
        except charging.ChargeRefused as refusal:
            return errors(KEY_HEADER, refusal.message, status.HTTP_400_BAD_REQUEST)
        try:
            data = read_body(request.body)
        except ValueError as exc:
            return errors("non_field_errors", str(exc), status.HTTP_400_BAD_REQUEST)
        try:
            fields = read_fields(data)
        except charging.ChargeRefused as refusal:
            return errors(refusal.field, refusal.message, 422)
        card = find_card(fields["customer_id"])
        if card is None:
            return errors(
                "customer_id",
                "No card on file has this PayTrace vault id.",
                status.HTTP_404_NOT_FOUND,
            )
        user = request.user
        try:
            outcome = charging.request_charge(
                card=card,
                invno=fields["invno"],
                amount=fields["amount"],
                idempotency_key=key,
                key_scope=f"user:{user.pk}",
                source=Charge.Source.API,
                requested_by=user,  # type: ignore[arg-type]
                confirm_over_balance=fields["confirm_over_balance"],
            )
        except charging.IdempotencyConflict as conflict:
            return errors(KEY_HEADER, str(conflict), status.HTTP_409_CONFLICT)
        except charging.ChargeRefused as refusal:
            return errors(refusal.field or "non_field_errors", refusal.message, 422)
        return answer(outcome)


class ChargeDetailView(APIView):
    permission_classes = [HasScope, CanViewCharges]
    # A charging caller reads back the charge it made (a 202's `Location`).
    required_scopes = (Scope.PAYMENTS_READ, Scope.CHARGES_CREATE)

    @extend_schema(
        summary="Read a charge by its reference",
        responses={200: ChargeSerializer, 404: ErrorsSerializer},
    )
    def get(self, request: Request, reference: str) -> Response:
        charge = (
            Charge.objects.filter(reference=reference[:32])
            .select_related("card")
            .first()
        )
        if charge is None:
            return errors("reference", "No charge has this reference.", 404)
        charging.link_payment(charge)
        return Response(represent(charge))


# Included by integrations/urls.py (which also routes the POST as `charge-api`).
urlpatterns = [
    path(
        "api/payments/charges/<str:reference>",
        ChargeDetailView.as_view(),
        name="charge-detail",
    ),
]
