"""`{% load portal_format %}`: `{{ amount|money:currency }}`, `{{ when|when }}`."""

from django import template
from django.utils.safestring import SafeString

from mappings.formatting import format_money, format_when, money_html

register = template.Library()


@register.filter
def money(amount: object, currency: str = "USD") -> str:
    return format_money(amount, currency)


@register.filter
def money_cell(amount: object, currency: str = "USD") -> SafeString:
    return money_html(amount, currency)


@register.filter
def when(value: object) -> str:
    return format_when(value) if value else ""  # type: ignore[arg-type]
