"""The vault's rules: how a sale on a profile's card is answered, and making that sale.

Decline rules for sales by customer (first match wins):

1. the profile's `decline_with` override (`POST /sandbox/paytrace/_card_state`):
   `insufficient_funds` → `"  NSF - Insufficient funds"` (soft), `lost_stolen` →
   `"  PICK UP CARD - Lost or stolen"` (hard);
2. a card whose expiry month has passed → `"  EXPIRED CARD"` (hard);
3. a card enrolled with a number ending `0002` → `"  DECLINE - Do not honor"` (soft);
4. the amount's cents: `.13` → `"  DECLINE - Do not honor"` (soft), `.51` →
   `"  NSF - Insufficient funds"` (soft), `.43` → `"  PICK UP CARD - Lost or stolen"`
   (hard);

anything else is approved.
"""

from datetime import date
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from integrations.sandbox.paytrace.models import Recurrence, Transaction, VaultCustomer

DO_NOT_HONOR = "  DECLINE - Do not honor"
INSUFFICIENT_FUNDS = "  NSF - Insufficient funds"
LOST_OR_STOLEN = "  PICK UP CARD - Lost or stolen"
EXPIRED_CARD = "  EXPIRED CARD"

DECLINING_CENTS = {
    Decimal("0.13"): DO_NOT_HONOR,
    Decimal("0.51"): INSUFFICIENT_FUNDS,
    Decimal("0.43"): LOST_OR_STOLEN,
}
STATE_DECLINES = {
    VaultCustomer.CardState.INSUFFICIENT_FUNDS: INSUFFICIENT_FUNDS,
    VaultCustomer.CardState.LOST_STOLEN: LOST_OR_STOLEN,
}


def decline_for(
    profile: VaultCustomer, amount: Decimal, today: date | None = None
) -> str | None:
    """The issuer's words declining this sale, or None to approve it."""
    if profile.decline_with in STATE_DECLINES:
        return STATE_DECLINES[VaultCustomer.CardState(profile.decline_with)]
    if profile.is_expired(today):
        return EXPIRED_CARD
    if profile.card_last4 == "0002":
        return DO_NOT_HONOR
    return DECLINING_CENTS.get(amount % 1)


def sell_by_customer(
    profile: VaultCustomer,
    amount: Decimal,
    *,
    invoice_id: str = "",
    description: str = "",
    customer_reference_id: str = "",
    has_csc: bool = False,
    created_by: str = "",
    from_ip: str = "",
    through: str = "API",
    recurrence: Recurrence | None = None,
    notify: bool = True,
    today: date | None = None,
) -> Transaction:
    """Make a SALE on the profile's card (approved or declined) and queue its event."""
    decline = decline_for(profile, amount, today)
    billing = profile.billing_address or {}
    return Transaction.create_sale(
        approved=decline is None,
        notify=notify,
        decline_message=decline or "",
        amount=amount,
        invoice_id=invoice_id,
        customer_reference_id=customer_reference_id,
        description=description,
        customer_id=profile.customer_id,
        email=profile.email,
        card_last4=profile.card_last4,
        card_brand=profile.card_brand,
        expiration_month=profile.expiration_month,
        expiration_year=profile.expiration_year % 100,
        billing_address=billing,
        avs_response="Full Exact Match" if billing.get("zip") else "No Match",
        csc_response="Match" if has_csc else "",
        created_through=through,
        created_by=created_by,
        created_from_ip=from_ip,
        recurrence=recurrence,
    )


@transaction.atomic
def delete_profile(profile: VaultCustomer) -> int:
    """Remove a profile and cancel its active schedules; return how many."""
    cancelled = Recurrence.objects.filter(
        customer_id=profile.customer_id, status=Recurrence.Status.ACTIVE
    ).update(status=Recurrence.Status.CANCELLED, updated_at=timezone.now())
    profile.delete()
    return cancelled
