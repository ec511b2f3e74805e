"""The enrolment pages' forms: the details typed into the portal's own inputs.

The card itself is typed into PayTrace's hosted fields (an iframe the portal never
reads); these forms carry only the `hpf_token`/`enc_key` pair the page's script got
for it, and the billing details. Every value is checked by `integrations.cards`, so a
card number typed into a portal input is refused, and `scrub` keeps it from being
echoed back into the page.
"""

from collections.abc import Callable
from typing import Any

from django import forms
from django.http import QueryDict

from integrations import cards
from integrations.cardnumbers import might_hold_card_number
from integrations.models import Connection


def _checked(check: Callable[[str], str]) -> Callable[[Any], str]:
    def clean(value: Any) -> str:
        try:
            return check(value)
        except cards.CardError as exc:
            raise forms.ValidationError(exc.message) from exc

    return clean


class CardDetailsForm(forms.Form):
    """What the customer's link page asks for besides the card."""

    billing_name = forms.CharField(
        label="Name on card",
        max_length=cards.BILLING_NAME_MAX,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "cc-name"}),
    )
    billing_zip = forms.CharField(
        label="Billing ZIP",
        max_length=10,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "postal-code", "size": 10}),
    )
    email = forms.CharField(
        label="E-mail for receipts",
        max_length=254,
        required=False,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    hpf_token = forms.CharField(widget=forms.HiddenInput, required=False)
    enc_key = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Hidden: their errors would show nowhere. `clean` says what is wrong with
        # them at the top of the form instead.
        for name in ("hpf_token", "enc_key"):
            self.fields[name].validators = []

    def clean_billing_name(self) -> str:
        return _checked(cards.check_billing_name)(self.cleaned_data["billing_name"])

    def clean_billing_zip(self) -> str:
        return _checked(cards.check_zip)(self.cleaned_data["billing_zip"])

    def clean_email(self) -> str:
        return _checked(cards.check_email)(self.cleaned_data["email"])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors:
            try:
                cards.check_tokens(data.get("hpf_token", ""), data.get("enc_key", ""))
            except cards.CardError as exc:
                raise forms.ValidationError(exc.message) from exc
        return data

    def add_card_error(self, error: cards.CardError) -> None:
        field = error.field if error.field in self.fields else None
        if field in ("hpf_token", "enc_key"):
            field = None  # hidden: say it at the top
        self.add_error(field, error.message)


class StaffEnrolForm(CardDetailsForm):
    """A finance user taking a card by phone: the customer too."""

    field_order = ("paytrace", "custno", "billing_name", "billing_zip", "email")

    paytrace = forms.ModelChoiceField(
        label="PayTrace account",
        queryset=Connection.objects.none(),
        empty_label=None,
    )
    custno = forms.CharField(
        label="Sage Pro customer",
        max_length=20,
        help_text="The customer number; its name shows once it is found.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "size": 12}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["paytrace"].queryset = enrolment_connections()  # type: ignore[attr-defined]
        self.fields["billing_name"].label = "Cardholder name"
        self.fields["email"].label = "Customer e-mail"

    def clean_custno(self) -> str:
        value = " ".join(str(self.cleaned_data["custno"]).split()).upper()
        if might_hold_card_number(value):
            raise forms.ValidationError(
                "That looks like a card number. Enter the Sage Pro customer number."
            )
        return value


class ReplaceForm(StaffEnrolForm):
    """Replacing a card: its connection and customer are fixed."""

    def __init__(self, *args: Any, card: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["paytrace"].disabled = True
        self.fields["custno"].disabled = True
        self.initial.update({"paytrace": card.paytrace_id, "custno": card.custno})


class LinkForm(forms.Form):
    """Who the customer's enrolment link is for, and how long it works."""

    paytrace = forms.ModelChoiceField(
        label="PayTrace account", queryset=Connection.objects.none(), empty_label=None
    )
    custno = forms.CharField(label="Sage Pro customer", max_length=20)
    email = forms.CharField(
        label="Send to",
        max_length=254,
        required=False,
        help_text="The customer's e-mail; leave empty to copy the link yourself.",
        widget=forms.EmailInput,
    )
    hours = forms.IntegerField(
        label="Works for (hours)",
        min_value=1,
        max_value=cards.LINK_HOURS_MAX,
        initial=72,
    )

    def __init__(self, *args: Any, card: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["paytrace"].queryset = enrolment_connections()  # type: ignore[attr-defined]
        if card is not None:
            self.fields["paytrace"].disabled = True
            self.fields["custno"].disabled = True
            self.initial.update(
                {
                    "paytrace": card.paytrace_id,
                    "custno": card.custno,
                    "email": card.email,
                }
            )

    def clean_custno(self) -> str:
        value = " ".join(str(self.cleaned_data["custno"]).split()).upper()
        if might_hold_card_number(value):
            raise forms.ValidationError(
                "That looks like a card number. Enter the Sage Pro customer number."
            )
        return value

    def clean_email(self) -> str:
        return _checked(cards.check_email)(self.cleaned_data["email"])


def enrolment_connections() -> Any:
    """Active PayTrace connections that post to a Sage Pro company."""
    return Connection.objects.filter(
        kind=Connection.Kind.PAYTRACE, is_active=True, sagepro__isnull=False
    ).select_related("sagepro")


class ScrubsCardNumbersOnError(forms.BaseForm):
    """A form that, once it has found errors, shows the person none of what they typed
    that looks like a card number (the field comes back empty, its error says why)."""

    def full_clean(self) -> None:
        super().full_clean()
        if self.errors and isinstance(self.data, QueryDict):
            self.data = scrub(self.data)


def scrub(data: QueryDict) -> QueryDict:
    """The submitted values minus anything that looks like a card number, and minus
    the single-use tokens: what a re-shown form may put back into the page."""
    clean = data.copy()
    for key in list(clean.keys()):
        if key in ("hpf_token", "enc_key"):
            clean.setlist(key, [])
            continue
        clean.setlist(
            key, ["" if might_hold_card_number(v) else v for v in clean.getlist(key)]
        )
    return clean
