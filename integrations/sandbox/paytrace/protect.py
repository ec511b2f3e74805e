"""The Protect.js stand-in's server side: client keys, and turning a card typed into the
hosted fields into a single-use `hpf_token`/`enc_key` pair.

The card number and CSC arrive here, are checked, and go no further: the token row
keeps the last four digits, the brand and the expiry. Errors name the field, never
echo its value.
"""

import secrets
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.db import transaction
from django.utils import timezone

from integrations.sandbox.paytrace.cards import brand_of, is_luhn_valid
from integrations.sandbox.paytrace.models import (
    HOSTED_TOKEN_LIFETIME,
    HostedFieldsToken,
    hash_token,
)

# The longest value the tokenize endpoint reads from a field: enough for any card
# number with spaces or dashes, and for a month or year with padding.
MAX_FIELD_LENGTH = 40
# How far ahead an expiry year may be (PayTrace's limit is unverified).
MAX_YEARS_AHEAD = 20


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class CardRefused(ValueError):
    """The hosted fields refused what was typed; `errors` name the fields."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class CheckedCard:
    last4: str
    brand: str
    month: int
    year: int  # four digits


def _field(value: Any) -> str:
    if value is None or isinstance(value, bool | dict | list):
        return ""
    return str(value).strip()[: MAX_FIELD_LENGTH + 1]


def _number(value: Any) -> int | None:
    text = _field(value)
    if not (text.isascii() and text.isdigit()) or len(text) > 4:
        return None
    return int(text)


def check_card(
    number: Any, month: Any, year: Any, csc: Any, today: date | None = None
) -> CheckedCard:
    """Check a typed card (Luhn, expiry not past, CSC 3-4 digits); raise CardRefused."""
    today = today or timezone.localdate()
    errors: list[FieldError] = []
    digits = _field(number).replace(" ", "").replace("-", "")
    if len(digits) > MAX_FIELD_LENGTH or not (
        digits.isascii() and is_luhn_valid(digits)
    ):
        errors.append(
            FieldError(
                "number",
                "Enter a valid card number (13 to 19 digits that pass the card check).",
            )
        )
    month_value = _number(month)
    if month_value is None or not 1 <= month_value <= 12:
        errors.append(FieldError("expiration_month", "Enter the month as 1 to 12."))
        month_value = None
    year_value = _number(year)
    if year_value is not None and year_value < 100:
        year_value += 2000
    if year_value is None or not (
        today.year <= year_value <= today.year + MAX_YEARS_AHEAD
    ):
        errors.append(
            FieldError(
                "expiration_year",
                f"Enter the year as {today.year} to {today.year + MAX_YEARS_AHEAD}.",
            )
        )
        year_value = None
    if (
        month_value is not None
        and year_value is not None
        and (year_value, month_value) < (today.year, today.month)
    ):
        errors.append(FieldError("expiration_month", "The card has expired."))
    code = _field(csc)
    if not (code.isascii() and code.isdigit() and 3 <= len(code) <= 4):
        errors.append(FieldError("csc", "Enter the 3 or 4 digit security code."))
    if errors:
        raise CardRefused(errors)
    assert month_value is not None and year_value is not None
    return CheckedCard(
        last4=digits[-4:], brand=brand_of(digits), month=month_value, year=year_value
    )


def issue_hosted_token(number: Any, month: Any, year: Any, csc: Any) -> tuple[str, str]:
    """Tokenize a card as the hosted fields do; return `(hpf_token, enc_key)`.

    Also the in-process way for the demo's seeding to get a token without a browser
    (the client key is the HTTP endpoint's business, checked there).
    """
    card = check_card(number, month, year, csc)
    hpf_token = secrets.token_urlsafe(32)
    enc_key = secrets.token_urlsafe(24)
    now = timezone.now()
    HostedFieldsToken.objects.create(
        digest=hash_token(hpf_token),
        enc_key=enc_key,
        card_last4=card.last4,
        card_brand=card.brand,
        expiration_month=card.month,
        expiration_year=card.year,
        created_at=now,
        expires_at=now + HOSTED_TOKEN_LIFETIME,
    )
    return hpf_token, enc_key


class TokenRefused(ValueError):
    """An `hpf_token`/`enc_key` pair that cannot be used (unknown, used, expired)."""


def redeem_hosted_token(hpf_token: Any, enc_key: Any) -> HostedFieldsToken:
    """Use a token once: return its card details and mark it used; raise TokenRefused.

    Call inside the transaction that makes the vault change, so a failed change leaves
    the token unused.
    """
    if not isinstance(hpf_token, str) or not hpf_token.strip():
        raise TokenRefused("Please provide the hpf_token from the hosted fields.")
    if not isinstance(enc_key, str) or not enc_key.strip():
        raise TokenRefused("Please provide the enc_key from the hosted fields.")
    with transaction.atomic():
        row = (
            HostedFieldsToken.objects.select_for_update()
            .filter(digest=hash_token(hpf_token.strip()[:200]))
            .first()
        )
        if row is None or not secrets.compare_digest(row.enc_key, enc_key.strip()):
            raise TokenRefused(
                "The hpf_token and enc_key are not a pair the hosted fields issued."
            )
        if row.used_at is not None:
            raise TokenRefused(
                "The hpf_token was used already; tokenize the card again."
            )
        now = timezone.now()
        if row.expires_at <= now:
            raise TokenRefused("The hpf_token has expired; tokenize the card again.")
        row.used_at = now
        row.save(update_fields=["used_at"])
    return row
