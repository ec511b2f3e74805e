"""Charging cards on file (issue 15): the charges made, and the open invoices with
their "Charge card on file" confirmation page.

The page previews the charge (the invoice's balance read fresh from Sage Pro, the
customer's active cards, the amount), and "Confirm charge" posts with an idempotency
key made when the page was rendered, so a double click or a reload charges once.
`integrations.charging` does the work.
"""

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from integrations import charging
from integrations.admin.base import PortalMedia, ReadOnlyAdmin, change_link, pre
from integrations.mirror import mirror_key
from integrations.models import MirroredInvoice, ReviewItem
from integrations.models.cards import CardOnFile
from integrations.models.charges import Charge
from mappings.formatting import format_money

ADD_CHARGE = "integrations.add_charge"
TEMPLATES = "admin/integrations/mirroredinvoice"


def _require_charge(request: HttpRequest) -> None:
    if not request.user.has_perm(ADD_CHARGE):
        raise PermissionDenied(f"Charging a card needs the “{ADD_CHARGE}” permission.")


@admin.register(Charge)
class ChargeAdmin(ReadOnlyAdmin):
    """Every charge the portal asked PayTrace for, with who asked and what came back."""

    list_display = (
        "reference",
        "invno",
        "custno",
        "amount_display",
        "state",
        "decline_reason",
        "requested_by_name",
        "source",
        "created_at",
    )
    list_filter = ("state", "source", "decline_category")
    search_fields = ("reference", "invno", "custno", "transaction_id")
    list_select_related = ("card",)
    date_hierarchy = "created_at"
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "reference",
                    "state",
                    "amount_display",
                    "invno",
                    "custno",
                    "card_display",
                    "invoice_balance",
                    "balance_source",
                    "over_balance_confirmed",
                )
            },
        ),
        (
            "Who asked",
            {"fields": ("source", "requested_by_name", "requested_by", "created_at")},
        ),
        (
            "PayTrace's answer",
            {
                "fields": (
                    "transaction_id",
                    "response_code",
                    "approval_code",
                    "approval_message",
                    "decline_category",
                    "error_display",
                    "attempts",
                    "sent_at",
                    "finished_at",
                )
            },
        ),
        ("What it became", {"fields": ("payment_display", "review_items_display")}),
    )
    Media = PortalMedia

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f for fs in self.fieldsets for f in fs[1]["fields"]]

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, obj: Charge) -> str:
        return format_money(obj.amount, "USD")

    @admin.display(description="Decline reason")
    def decline_reason(self, obj: Charge) -> str:
        if obj.state != Charge.State.DECLINED:
            return ""
        words = " ".join(obj.approval_message.split())
        return f"{words} ({obj.decline_category})" if obj.decline_category else words

    @admin.display(description="Card")
    def card_display(self, obj: Charge) -> SafeString:
        card = obj.card
        return change_link(
            card,
            f"{card.brand or 'Card'} ending {card.last4}, expires {card.expiry} "
            f"(vault id {card.vault_customer_id})",
        )

    @admin.display(description="Error")
    def error_display(self, obj: Charge) -> SafeString | str:
        return pre(obj.error) if obj.error else "-"

    @admin.display(description="Payment")
    def payment_display(self, obj: Charge) -> SafeString | str:
        charging.link_payment(obj)
        if obj.payment is None:
            if obj.state == Charge.State.APPROVED:
                return "Not yet: the pipeline is recording the sale."
            return "-"
        return change_link(obj.payment, f"PayTrace {obj.payment.transaction_id}")

    @admin.display(description="Review items")
    def review_items_display(self, obj: Charge) -> SafeString | str:
        items = list(ReviewItem.objects.filter(charge=obj))
        if not items:
            return "none"
        return format_html(
            "<br>".join(["{}"] * len(items)),
            *[
                change_link(i, f"{i.get_state_display()}: {i.reason[:80]}")
                for i in items
            ],
        )


class HasCardFilter(admin.SimpleListFilter):
    title = "card on file"
    parameter_name = "card"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Has a card on file"), ("no", "No card on file")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(has_card=True)
        if self.value() == "no":
            return queryset.filter(has_card=False)
        return queryset


def active_cards(invoice: MirroredInvoice) -> QuerySet:
    return CardOnFile.objects.filter(
        sagepro=invoice.connection,
        custno=mirror_key(invoice.custno),
        state=CardOnFile.State.ACTIVE,
    ).select_related("paytrace", "sagepro")


@admin.register(MirroredInvoice)
class OpenInvoiceAdmin(ReadOnlyAdmin):
    """Open invoices (the portal's copy of Sage Pro's), to charge on a card on file."""

    list_display = (
        "invno",
        "custno",
        "invdte",
        "invamt",
        "balance",
        "connection",
        "has_card_display",
        "charge_button",
    )
    list_display_links = None
    list_filter = ("connection", HasCardFilter)
    search_fields = ("invno", "custno")
    ordering = ("connection", "custno", "invno")
    actions = ["charge_card_on_file"]
    Media = PortalMedia

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        cards = CardOnFile.objects.filter(
            sagepro=OuterRef("connection"),
            custno=OuterRef("custno"),
            state=CardOnFile.State.ACTIVE,
        )
        return (
            super()
            .get_queryset(request)
            .filter(deleted=False, balance__gt=0)
            .select_related("connection")
            .annotate(has_card=Exists(cards))
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "title": "Open invoices"}
        return super().changelist_view(request, extra_context)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "<int:pk>/charge/",
                view(self.charge_view),
                name="integrations_mirroredinvoice_charge",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="Card on file", boolean=True, ordering="has_card")
    def has_card_display(self, obj: MirroredInvoice) -> bool:
        return bool(getattr(obj, "has_card", False))

    @admin.display(description="")
    def charge_button(self, obj: MirroredInvoice) -> SafeString | str:
        if not getattr(obj, "has_card", False):
            return ""
        url = reverse("admin:integrations_mirroredinvoice_charge", args=[obj.pk])
        return format_html('<a class="button" href="{}">Charge card on file</a>', url)

    def has_charge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(ADD_CHARGE)

    @admin.action(description="Charge card on file", permissions=["charge"])
    def charge_card_on_file(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponseRedirect | None:
        invoices = list(queryset[:2])
        if len(invoices) != 1:
            self.message_user(
                request,
                "Choose one invoice: each charge is confirmed on its own page.",
                messages.WARNING,
            )
            return None
        return redirect("admin:integrations_mirroredinvoice_charge", invoices[0].pk)

    def charge_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Preview a charge, then (confirmed, with the page's key) make it once."""
        _require_charge(request)
        invoice = get_object_or_404(MirroredInvoice, pk=pk, deleted=False)
        cards = active_cards(invoice)
        form = ChargeForm(request.POST or None, cards=cards)
        if request.method != "POST":
            form = ChargeForm(
                initial={"key": charging.new_admin_key(), "card": cards.first()},
                cards=cards,
            )
            card = cards.first()
            preview = (
                charging.preview_charge(card, invoice.invno, None) if card else None
            )
            return self._page(request, invoice, form, preview)
        if not form.is_valid():
            return self._page(request, invoice, form, None)
        data = form.cleaned_data
        card, amount = data["card"], data["amount"]
        preview = charging.preview_charge(card, invoice.invno, amount)
        shown = charging.fingerprint(card, invoice.invno, amount)
        if "confirm" not in request.POST:
            return self._page(request, invoice, form, preview, shown=shown)
        if data["previewed"] != shown:
            note = "The card or amount changed since the preview: check it and confirm."
            return self._page(request, invoice, form, preview, shown=shown, note=note)
        user = request.user
        try:
            outcome = charging.request_charge(
                card=card,
                invno=invoice.invno,
                amount=amount,
                idempotency_key=data["key"],
                key_scope=f"user:{user.pk}",
                source=Charge.Source.ADMIN,
                requested_by=user,  # type: ignore[arg-type]
                confirm_over_balance=data["confirm_over_balance"],
            )
        except charging.IdempotencyConflict as conflict:
            form.add_error(None, str(conflict))
            return self._page(request, invoice, form, preview, shown=shown)
        except charging.ChargeRefused as refusal:
            field = refusal.field if refusal.field in form.fields else None
            form.add_error(field, refusal.message)
            return self._page(request, invoice, form, preview, shown=shown)
        return self._result(request, invoice, outcome)

    def _page(
        self,
        request: HttpRequest,
        invoice: MirroredInvoice,
        form: "ChargeForm",
        preview: charging.ChargePreview | None,
        *,
        shown: str = "",
        note: str = "",
    ) -> TemplateResponse:
        if preview is not None and not shown and preview.amount is not None:
            shown = charging.fingerprint(preview.card, invoice.invno, preview.amount)
            form.initial["amount"] = preview.amount
        key = form.initial.get("key", "")
        if form.is_bound:
            # A key that failed its checks is not shown back: the next try gets a new one.
            key = (
                form.cleaned_data.get("key", "")
                if hasattr(form, "cleaned_data")
                else ""
            ) or charging.new_admin_key()
        return TemplateResponse(
            request,
            f"{TEMPLATES}/charge.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": f"Charge card on file: invoice {invoice.invno}",
                "invoice": invoice,
                "form": form,
                "preview": preview,
                "shown": shown,
                "note": note,
                "key": key,
                "has_cards": form.cards.exists(),
            },
        )

    def _result(
        self,
        request: HttpRequest,
        invoice: MirroredInvoice,
        outcome: charging.ChargeOutcome,
    ) -> TemplateResponse:
        return TemplateResponse(
            request,
            f"{TEMPLATES}/charge_result.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": f"Charge on invoice {invoice.invno}",
                "invoice": invoice,
                "charge": outcome.charge,
                "replayed": outcome.replayed,
                "decline_reason": " ".join(outcome.charge.approval_message.split()),
            },
        )


class CardChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        expired = " (expired)" if obj.is_expired() else ""
        return (
            f"{obj.brand or 'Card'} ending {obj.last4}, expires {obj.expiry}{expired}"
        )


class ChargeForm(forms.Form):
    card = CardChoice(
        queryset=CardOnFile.objects.none(), widget=forms.RadioSelect, empty_label=None
    )
    amount = forms.DecimalField(
        max_digits=14,
        decimal_places=2,
        min_value=Decimal("0.01"),
        help_text="Dollars and cents; the invoice's balance unless you change it.",
    )
    confirm_over_balance = forms.BooleanField(
        required=False, label="Yes, charge more than the invoice's balance"
    )
    key = forms.CharField(widget=forms.HiddenInput, max_length=charging.KEY_MAX_LENGTH)
    previewed = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(
        self, data: Any = None, *args: Any, cards: QuerySet, **kwargs: Any
    ) -> None:
        if data is not None:
            # What is typed is shown again on an error: never a card number.
            data = data.copy()
            for name in ("amount", "key", "previewed", "card"):
                if isinstance(data.get(name), str):
                    data[name] = charging.shown(data[name])
        super().__init__(data, *args, **kwargs)
        self.cards = cards
        self.fields["card"].queryset = cards  # type: ignore[attr-defined]

    def clean_key(self) -> str:
        key = self.cleaned_data["key"]
        if not key.startswith("admin-"):
            raise forms.ValidationError("Reload the page to get a new confirmation.")
        try:
            return charging.check_key(key)
        except charging.ChargeRefused:
            raise forms.ValidationError(
                "Reload the page to get a new confirmation."
            ) from None
