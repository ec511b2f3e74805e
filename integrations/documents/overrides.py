"""What a reviewer may correct on a cash receipt, and why anything else is refused."""

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from integrations.models import PaymentTransaction
from mappings import fields as fm

SPECS = {spec.name: spec for spec in fm.CASH_RECEIPT_SPECS}
TARGET_FIELDS = tuple(SPECS)

# What a reviewer may correct on a receipt. Money and identity are not among them: the
# amount is what PayTrace collected, and the customer and invoice change only through
# the apply decisions (apply, split, on account), which check them against Sage Pro.
CORRECTABLE_FIELDS = ("date", "method", "gl_account")
PROTECTED_FIELDS = {
    "amount": "the receipt amount is always the amount PayTrace collected",
    "custno": "change the customer with “Post on account” or by applying the "
    "payment to that customer's invoice",
    "invno": "change the invoice with “Apply to an invoice” or “Split across invoices”",
    "reference": "the reference is the PayTrace transaction id that reconciliation "
    "matches the receipt by",
}
# A corrected date moves a receipt out of a closed or locked period, forwards only: not
# before the payment, not after today, and at most this many days after the payment (a
# quarter), so a reviewer cannot shift cash into an unrelated period or year.
DATE_CORRECTION_MAX_DAYS = 92


class OverrideError(ValueError):
    """A reviewer's correction the portal refuses; the message names the field."""


def override_problems(
    overrides: Mapping[str, Any], payment_day: date, today: date
) -> list[fm.FieldProblem]:
    """Why each of a reviewer's overrides is refused (empty when all may be applied)."""
    problems = []
    for name, raw in overrides.items():
        if name in PROTECTED_FIELDS:
            message = f"cannot be corrected: {PROTECTED_FIELDS[name]}"
        elif name not in CORRECTABLE_FIELDS:
            message = (
                f"is not a field a reviewer can correct "
                f"({', '.join(CORRECTABLE_FIELDS)})"
            )
        else:
            continue
        problems.append(
            fm.FieldProblem(name, message, raw, "reviewer override", f"OVERRIDE:{name}")
        )
    raw_day = overrides.get("date")
    if raw_day in (None, ""):
        return problems
    try:
        day = fm.coerce(raw_day, SPECS["date"])
    except (fm.TransformError, TypeError) as exc:
        message = str(exc)
    else:
        latest = payment_day + timedelta(days=DATE_CORRECTION_MAX_DAYS)
        if day < payment_day:
            message = (
                f"is before the payment's date {payment_day.isoformat()}; "
                "a receipt cannot predate the money"
            )
        elif day > today:
            message = f"is after today ({today.isoformat()})"
        elif day > latest:
            message = (
                f"is more than {DATE_CORRECTION_MAX_DAYS} days after the payment's "
                f"date {payment_day.isoformat()}; book it in Sage Pro by hand"
            )
        else:
            return problems
    problems.append(
        fm.FieldProblem("date", message, raw_day, "reviewer override", "OVERRIDE:date")
    )
    return problems


def check_overrides(overrides: Mapping[str, Any], txn: PaymentTransaction) -> None:
    """Refuse a reviewer's corrections unless every one may be applied."""
    today = fm.business_date(timezone.now(), settings.BUSINESS_TIME_ZONE)
    problems = override_problems(overrides, txn.posting_date(), today)
    if problems:
        raise OverrideError("; ".join(p.describe() for p in problems))


def _applicable(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (overrides or {}).items() if k in CORRECTABLE_FIELDS}
