"""Finding a payment: the search, filters, derived columns and totals that the review
queue and the payment list share.

A search term is read for what it looks like, so each part stays an exact match or a
range on an indexed column rather than `icontains` over everything:

- an amount (`67.22`, `$67.22`, `1,500`, `67.2`): the payment's amount, exactly, or
  the range the digits given cover (`67.2` is 67.20 to 67.29, `67` is 67.00 to 67.99);
- four digits (`4242`): the card's last four, exactly (and an amount of 4242.xx);
- anything else: the PayTrace transaction id, the invoice reference, the PayTrace
  customer id and the Sage Pro customer (exactly, any case), and the payer's billing
  name and e-mail (contained).

Several words must all match (`inland 67.22`).
"""

import re
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import (
    CharField,
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Coalesce, NullIf
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import smart_split, unescape_string_literal

from integrations.models import Posting, ReviewItem
from mappings.formatting import business_zone, format_money

SEARCH_HELP = (
    "Find by amount (67.22), card last four (4242), invoice or transaction number, "
    "customer number, or the payer's name or e-mail."
)
PER_PAGE = 50

_AMOUNT = re.compile(r"^\$?\s*(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{0,2}))?$")
_LAST_FOUR = re.compile(r"^\d{4}$")
_CURRENCY_CODES = ("USD", "CAD", "EUR", "GBP", "AUD", "MXN")


# --- search -------------------------------------------------------------------------


def amount_range(term: str) -> tuple[Decimal, Decimal] | None:
    """The amounts a term may mean: `67.22` → (67.22, 67.22), `67.2` → (67.20,
    67.29), `67` → (67.00, 67.99); None if it is not an amount."""
    text = term.strip().upper()
    for code in _CURRENCY_CODES:
        text = text.removesuffix(code).strip()
    match = _AMOUNT.match(text)
    if match is None:
        return None
    whole, cents = match.group(1).replace(",", ""), match.group(2) or ""
    try:
        low = Decimal(f"{whole}.{cents.ljust(2, '0')}")
    except InvalidOperation:
        return None
    step = {2: Decimal("0"), 1: Decimal("0.09")}.get(len(cents), Decimal("0.99"))
    if low > Decimal("999999999999.99"):
        return None
    return low, low + step


def payment_q(term: str, prefix: str = "") -> Q:
    """What one search term matches, on `PaymentTransaction` fields under `prefix`
    (`"transaction__"` from a review item)."""
    p = prefix
    found = Q()
    amounts = amount_range(term)
    if amounts is not None:
        low, high = amounts
        found |= (
            Q(**{f"{p}amount": low})
            if low == high
            else Q(**{f"{p}amount__gte": low, f"{p}amount__lte": high})
        )
    if _LAST_FOUR.match(term):
        found |= Q(**{f"{p}card_last4": term})
    if term.isdigit():
        # Digits have no case: exact matches the indexes answer.
        return (
            found
            | Q(**{f"{p}transaction_id": term})
            | Q(**{f"{p}invoice_reference": term})
        )
    if amounts is not None:
        return found
    found |= (
        Q(**{f"{p}transaction_id__iexact": term})
        | Q(**{f"{p}invoice_reference__iexact": term})
        | Q(**{f"{p}customer_reference__iexact": term})
        | Q(**{f"{p}match_explanation__customer__iexact": term})
        | Q(**{f"{p}source_record__billing_address__name__icontains": term})
        | Q(**{f"{p}source_record__receipt_emailed_to__icontains": term})
        | Q(**{f"{p}source_record__email__icontains": term})
    )
    receipts = Posting.objects.filter(
        transaction=OuterRef(f"{p}pk" if p else "pk"),
        kind=Posting.Kind.CASH_RECEIPT,
        payload__custno__iexact=term,
    )
    return found | Q(Exists(receipts))


def search_terms(search_term: str) -> list[str]:
    """The words of a search, quoted phrases kept whole (as the admin reads them)."""
    terms = []
    for bit in smart_split(search_term):
        if bit.startswith(('"', "'")) and bit[0] == bit[-1] and len(bit) > 1:
            bit = unescape_string_literal(bit)
        if bit.strip():
            terms.append(bit.strip())
    return terms


def search_payments(
    queryset: QuerySet, search_term: str, prefix: str = "", extra: Any = None
) -> QuerySet:
    """`queryset` narrowed to what every word of `search_term` matches; `extra(term)`
    may add a Q of the caller's own for words that are not amounts or numbers."""
    for term in search_terms(search_term):
        q = payment_q(term, prefix)
        if extra is not None and not term.isdigit() and amount_range(term) is None:
            q |= extra(term)
        queryset = queryset.filter(q)
    return queryset


# --- derived columns ----------------------------------------------------------------


def json_text(path: str, *keys: str) -> KeyTextTransform:
    """The text at `keys` of the JSON field at `path` (which may cross a relation,
    unlike `KT`, which reads the first part of its path as the field)."""
    expression: Any = F(path)
    for key in keys[:-1]:
        expression = KeyTransform(key, expression)
    return KeyTextTransform(keys[-1], expression)


def _blank_is_null(expression: Any) -> NullIf:
    return NullIf(expression, Value(""), output_field=CharField())


def customer_expression(prefix: str = "") -> Coalesce:
    """The Sage Pro customer of a payment: its receipt's, else the one the matcher
    identified, else the PayTrace customer id (which is often the same number)."""
    receipt = Posting.objects.filter(
        transaction=OuterRef(f"{prefix}pk" if prefix else "pk"),
        kind=Posting.Kind.CASH_RECEIPT,
    ).values(custno=json_text("payload", "custno"))[:1]
    return Coalesce(
        _blank_is_null(Subquery(receipt)),
        _blank_is_null(json_text(f"{prefix}match_explanation", "customer")),
        _blank_is_null(F(f"{prefix}customer_reference")),
        output_field=CharField(),
    )


def payer_annotations(prefix: str = "") -> dict[str, Any]:
    """`payer_name` and `payer_email`, as PayTrace's record gives them."""
    return {
        "payer_name": json_text(f"{prefix}source_record", "billing_address", "name"),
        "payer_email": Coalesce(
            _blank_is_null(json_text(f"{prefix}source_record", "receipt_emailed_to")),
            _blank_is_null(json_text(f"{prefix}source_record", "email")),
            output_field=CharField(),
        ),
    }


def payer_html(obj: object) -> SafeString | str:
    """The payer's name over their e-mail (a list cell); "" when PayTrace gave none."""
    name = (getattr(obj, "payer_name", "") or "").strip()
    email = (getattr(obj, "payer_email", "") or "").strip()
    if not (name or email):
        return ""
    return format_html(
        '{}<span class="portal-payer-email">{}</span>', name or "-", email
    )


def open_review_exists() -> Exists:
    """Whether an open review item holds the payment (for a transaction queryset)."""
    return Exists(
        ReviewItem.objects.filter(
            transaction=OuterRef("pk"), state=ReviewItem.State.OPEN
        )
    )


# --- filters ------------------------------------------------------------------------


class DateRangeFilter(admin.ListFilter):
    """A from–to date filter on one datetime field, the dates read in the business
    time zone (a day is its whole local day). A date that is not one is ignored and
    named in the filter."""

    title = "paid between"
    field_path = "created_at"
    parameter_from = "paid_from"
    parameter_to = "paid_to"
    template = "admin/integrations/date_range_filter.html"

    def __init__(
        self,
        request: HttpRequest,
        params: dict[str, Any],
        model: type,
        model_admin: admin.ModelAdmin,
    ) -> None:
        super().__init__(request, params, model, model_admin)
        for name in self.expected_parameters():
            if name in params:
                self.used_parameters[name] = params.pop(name)[-1]
        self.problems: list[str] = []
        self.start = self._date(self.parameter_from)
        self.end = self._date(self.parameter_to)

    def _date(self, name: str) -> date | None:
        text = str(self.used_parameters.get(name) or "").strip()
        if not text:
            return None
        try:
            return date.fromisoformat(text)
        except ValueError:
            self.problems.append(f"“{text}” is not a date (use YYYY-MM-DD).")
            return None

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return [self.parameter_from, self.parameter_to]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        zone = business_zone()
        if self.start is not None:
            since = datetime.combine(self.start, time.min, tzinfo=zone)
            queryset = queryset.filter(**{f"{self.field_path}__gte": since})
        if self.end is not None:
            until = datetime.combine(
                self.end + timedelta(days=1), time.min, tzinfo=zone
            )
            queryset = queryset.filter(**{f"{self.field_path}__lt": until})
        return queryset

    def choices(self, changelist: ChangeList) -> Iterator[Any]:
        keep = {
            key: value
            for key, value in changelist.get_filters_params().items()
            if key not in self.expected_parameters()
        }
        if changelist.query:
            keep["q"] = changelist.query
        yield {
            "parameter_from": self.parameter_from,
            "parameter_to": self.parameter_to,
            "value_from": self.used_parameters.get(self.parameter_from, ""),
            "value_to": self.used_parameters.get(self.parameter_to, ""),
            "hidden": [
                (key, item)
                for key, value in keep.items()
                for item in (value if isinstance(value, list) else [value])
            ],
            "problems": self.problems,
            "clear_query_string": changelist.get_query_string(
                remove=[self.parameter_from, self.parameter_to]
            ),
            "zone": str(business_zone()),
        }


class AssignedFilter(admin.SimpleListFilter):
    title = "assigned to"
    parameter_name = "assigned"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [("me", "Me"), ("nobody", "Nobody")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "me":
            return queryset.filter(assigned_to=request.user.pk)
        if self.value() == "nobody":
            return queryset.filter(assigned_to__isnull=True)
        return queryset


# --- totals -------------------------------------------------------------------------


def list_totals(
    queryset: QuerySet, amount: str = "amount", currency: str = "currency"
) -> list[dict[str, Any]]:
    """Count and total amount of what `queryset` selects, per currency (one query)."""
    rows = (
        queryset.order_by()
        .values(code=F(currency))
        .annotate(count=Count("pk"), total=Sum(amount))
        .order_by("code")
    )
    return [
        {
            "currency": row["code"] or "",
            "count": row["count"],
            "total": format_money(row["total"], row["code"])
            if row["total"] is not None
            else "",
        }
        for row in rows
    ]


def totals_context(cl: ChangeList, **names: str) -> dict[str, Any]:
    """What `_list_totals.html` shows for a changelist: its count and totals."""
    return {
        "count": cl.result_count,
        "by_currency": list_totals(cl.queryset, **names),
        "filtered": cl.result_count != cl.full_result_count
        if cl.full_result_count is not None
        else bool(cl.query or cl.has_filters),
    }
