"""Keep card data out of the database and the logs.

Anything that looks like a card number (a Luhn-valid run of 13–19 digits, with or
without spaces or dashes) is masked to its last four digits, and any field named like a
card number or a card security code is blanked, before a body, a header or a log line
is stored. Callers learn whether anything was found, so the sender can be followed up.
"""

import logging
import re
from typing import Any

MASK = "[REDACTED]"

# 13–19 digits, optionally separated by single spaces or dashes, not part of a longer
# run of digits.
_PAN_RE = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")

# Field names (lower-case, letters and digits only) that hold a card number or CVV.
_CARD_NUMBER_KEYS = {
    "cardnumber",
    "cardnum",
    "ccnumber",
    "ccnum",
    "creditcardnumber",
    "pan",
    "accountnumbercard",
    "encryptednumber",
    "primaryaccountnumber",
}
_CVV_KEYS = {
    "cvv",
    "cvv2",
    "cvc",
    "cvc2",
    "csc",
    "cid",
    "securitycode",
    "cardcode",
    "cardsecuritycode",
    "cardverificationvalue",
    "encryptedcsc",
    "cvn",
}
# `number` alone is a card number only inside a card object.
_CARD_PARENTS = {"creditcard", "card", "payment_card", "paymentcard", "cc"}

_SECRET_HEADER_RE = re.compile(
    r"authorization|cookie|secret|token|password|api[-_]?key", re.I
)

_JSON_FIELD_RE = re.compile(r'"([A-Za-z0-9_\-]+)"(\s*:\s*)("(?:[^"\\]|\\.)*"|-?\d+)')
_FORM_FIELD_RE = re.compile(r"(?<![A-Za-z0-9_])([A-Za-z0-9_\-]+)([=~])([^&|\s]*)")


def _norm(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def is_sensitive_key(key: str, parent: str = "") -> bool:
    k = _norm(key)
    if k in _CARD_NUMBER_KEYS or k in _CVV_KEYS:
        return True
    return k == "number" and _norm(parent) in _CARD_PARENTS


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _mask_pan(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if not luhn_valid(digits):
        return match.group(0)
    return "*" * (len(digits) - 4) + digits[-4:]


def redact_text(text: str) -> tuple[str, bool]:
    """Mask card numbers and sensitive fields in free text, JSON text or form text."""
    found = False

    def field(match: re.Match, *, quoted: bool) -> str:
        nonlocal found
        key, sep, value = match.group(1), match.group(2), match.group(3)
        bare = value.strip('"')
        if (
            not is_sensitive_key(key)
            or not bare
            or bare == MASK
            or _already_masked(bare)
        ):
            return match.group(0)
        found = True
        replacement = f'"{MASK}"' if quoted else MASK
        return f'"{key}"{sep}{replacement}' if quoted else f"{key}{sep}{replacement}"

    text = _JSON_FIELD_RE.sub(lambda m: field(m, quoted=True), text)
    text = _FORM_FIELD_RE.sub(lambda m: field(m, quoted=False), text)
    masked = _PAN_RE.sub(_mask_pan, text)
    return masked, found or masked != text


def _already_masked(value: str) -> bool:
    return bool(re.fullmatch(r"[*xX•]+\d{0,4}", value))


def redact_data(value: Any, parent: str = "") -> tuple[Any, bool]:
    """Return a copy of parsed JSON with card data masked, and whether any was found."""
    if isinstance(value, dict):
        found = False
        out = {}
        for key, item in value.items():
            if (
                is_sensitive_key(str(key), parent)
                and item not in ("", None)
                and not (
                    isinstance(item, str) and (_already_masked(item) or item == MASK)
                )
            ):
                out[key] = MASK
                found = True
                continue
            out[key], hit = redact_data(item, str(key))
            found = found or hit
        return out, found
    if isinstance(value, list):
        items = [redact_data(item, parent) for item in value]
        return [i for i, _ in items], any(hit for _, hit in items)
    if isinstance(value, str):
        return redact_text(value)
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 13 <= len(str(abs(value))) <= 19
    ):
        text, hit = redact_text(str(value))
        return (text if hit else value), hit
    return value, False


def redact_headers(headers: dict[str, str]) -> tuple[dict[str, str], bool]:
    found = False
    out = {}
    for key, value in headers.items():
        if _SECRET_HEADER_RE.search(key) and "idempotency" not in key.lower():
            out[key] = MASK
            continue
        out[key], hit = redact_text(str(value))
        found = found or hit
    return out, found


class RedactingLogRecordFactory:
    """Mask card numbers in every log record, whoever logs it."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.base(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logging's problem, not ours
            return record
        masked, found = redact_text(message)
        if found:
            record.msg, record.args = masked, None
        return record


def install_log_redaction() -> None:
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, RedactingLogRecordFactory):
        logging.setLogRecordFactory(RedactingLogRecordFactory(factory))
