"""Keep card data out of the database and the logs.

The detector (`integrations.cardnumbers`) finds a card number in text and masks it to
its last four digits. Here it is applied to everything that crosses the boundary: in
parsed JSON it also looks at object keys, numbers and arrays of digit groups
(`[4111, 1111, 1111, 1111]`), and blanks any field named like a card number or a card
security code; headers lose their secrets; log records are masked before they are
written. Callers learn whether anything was found, so the sender can be followed up.

Nested data is walked without recursion, in linear time.
"""

import logging
import math
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from integrations.cardnumbers import (
    apply_replacements,
    card_number_replacements,
    luhn_valid,  # noqa: F401 - re-exported
    mask_card_numbers,
    might_hold_card_number,  # noqa: F401 - re-exported
)

MASK = "[REDACTED]"

# --- numbers and parsed data -----------------------------------------------------------

_SMALL = 10**12  # fewer than 13 digits: cannot be a card number


def _mask_number(value: Any, keyed: bool) -> tuple[Any, bool]:
    """A number that is (or contains) a card number becomes its masked text."""
    texts: list[str] = []
    try:
        if isinstance(value, int):
            if -_SMALL < value < _SMALL:
                return value, False
            texts.append(str(value))
        elif isinstance(value, float):
            if not math.isfinite(value):
                return value, False
            if -_SMALL < value < _SMALL:
                return value, False
            if value.is_integer() and abs(value) < 1e20:
                texts.append(str(int(value)))
            texts.append(repr(value))
        elif isinstance(value, Decimal):
            if not value.is_finite() or value.adjusted() < 12:
                return value, False
            if value.adjusted() < 20 and value == value.to_integral_value():
                texts.append(str(int(value)))
            texts.append(str(value))
    except ValueError:  # an integer too long to print
        return value, False
    for text in texts:
        masked, found = mask_card_numbers(text, keyed=keyed)
        if found:
            return masked, True
    return value, False


def _mask_scalar(value: Any, keyed: bool) -> tuple[Any, bool]:
    if isinstance(value, str):
        return mask_card_numbers(value, keyed=keyed)
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return _mask_number(value, keyed)
    return value, False


# An array element with more digits than this is not one group of a split card number
# (groups are 4, or 4-6-5): a list of 9-digit transaction ids is ids, never a card.
MAX_GROUP_DIGITS = 8


def _group_text(value: Any) -> str | None:
    """The text of an array element that may be one digit group of a card number."""
    text = _element_text(value)
    if text is None or sum(c.isdigit() for c in text) > MAX_GROUP_DIGITS:
        return None
    return text


def _element_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if -(10**20) < value < 10**20 else None
    if isinstance(value, float | Decimal):
        finite = (
            value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
        )
        return str(value) if finite and -(10**20) < value < 10**20 else None
    if isinstance(value, str) and len(value) <= 40:
        return value
    return None


def _mask_groups(items: list[Any], keyed: bool) -> bool:
    """Mask card numbers split across consecutive array elements, in place."""
    found = False
    run: list[int] = []
    for index in range(len(items) + 1):
        text = _group_text(items[index]) if index < len(items) else None
        if text is not None:
            run.append(index)
            continue
        if len(run) > 1:
            found = _mask_run(items, run, keyed) or found
        run = []
    return found


def _mask_run(items: list[Any], run: list[int], keyed: bool) -> bool:
    texts = [_group_text(items[i]) or "" for i in run]
    joined = ",".join(texts)
    replacements = card_number_replacements(joined, keyed)
    if not replacements:
        return False
    offset = 0
    for index, text in zip(run, texts, strict=True):
        mine = [
            (s - offset, e - offset, r)
            for s, e, r in replacements
            if offset <= s < offset + len(text)
        ]
        if mine:
            items[index] = apply_replacements(text, mine)
        offset += len(text) + 1
    return True


def _walk(
    root: Any,
    keyed: bool,
    sensitive: Callable[[Any, str, Any], bool] | None,
    parent: str = "",
) -> tuple[Any, bool]:
    """Mask card numbers in nested dicts, lists and tuples, without recursion."""
    if not isinstance(root, (dict, list, tuple)):
        return _mask_scalar(root, keyed)
    found = False
    # Each frame: source items, the container being built, the key names for
    # `sensitive`, and where the finished container goes in its parent.
    stack: list[list[Any]] = [[_items(root, parent), _empty(root), parent, root, None]]
    result: Any = None
    while stack:
        frame = stack[-1]
        items, out, parent = frame[0], frame[1], frame[2]
        for key, item, name in items:
            if isinstance(out, dict):
                masked_key, hit = _mask_scalar(key, keyed)
                found = found or hit
                if sensitive is not None and sensitive(key, parent, item):
                    out[masked_key] = MASK
                    found = True
                    continue
            else:
                masked_key = None
            if isinstance(item, (dict, list, tuple)):
                stack.append([_items(item, name), _empty(item), name, item, masked_key])
                break
            value, hit = _mask_scalar(item, keyed)
            found = found or hit
            _put(out, masked_key, value)
        else:
            stack.pop()
            source, slot = frame[3], frame[4]
            if isinstance(out, list):
                found = _mask_groups(out, keyed) or found
                if isinstance(source, tuple):
                    out = tuple(out)
            if stack:
                _put(stack[-1][1], slot, out)
            else:
                result = out
    return result, found


def _items(value: Any, parent: str) -> Iterator[tuple[Any, Any, str]]:
    if isinstance(value, dict):
        return ((k, v, str(k)) for k, v in value.items())
    return ((None, v, parent) for v in value)


def _empty(value: Any) -> Any:
    return {} if isinstance(value, dict) else []


def _put(container: Any, key: Any, value: Any) -> None:
    if isinstance(container, dict):
        container[key] = value
    else:
        container.append(value)


def mask_value(value: Any, *, keyed: bool = False) -> tuple[Any, bool]:
    """Mask card numbers anywhere in a string, a number or nested dicts and lists."""
    return _walk(value, keyed, None)


# --- fields named like card data -------------------------------------------------------

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

# `"key": value` in JSON text and `key=value` / `key~value` in form text. Keys are
# short so that no match scans far; the look-behinds keep a failed search from
# restarting inside a run of key characters.
_JSON_FIELD_RE = re.compile(
    r'"([A-Za-z0-9_\-]{1,64})"(\s{0,8}:\s{0,8})("(?:[^"\\]|\\.){0,256}"|-?\d{1,32})'
)
_FORM_FIELD_RE = re.compile(
    r"(?<![A-Za-z0-9_\-])([A-Za-z0-9_\-]{1,64})([=~])([^&|\s]*)"
)
_ALREADY_MASKED_RE = re.compile(r"[*xX•]+\d{0,4}")


def _norm(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def is_sensitive_key(key: str, parent: str = "") -> bool:
    k = _norm(key)
    if k in _CARD_NUMBER_KEYS or k in _CVV_KEYS:
        return True
    return k == "number" and _norm(parent) in _CARD_PARENTS


def _already_masked(value: str) -> bool:
    return bool(_ALREADY_MASKED_RE.fullmatch(value))


def _is_sensitive_item(key: Any, parent: str, item: Any) -> bool:
    return (
        is_sensitive_key(str(key), parent)
        and item not in ("", None)
        and not (isinstance(item, str) and (_already_masked(item) or item == MASK))
    )


class Masked(str):
    """Text this module has masked: the storage net (`carddata`) need not scan it again.

    Only `redact_text` makes one; any change to it (slicing, concatenation) gives a
    plain `str` again, which the net scans as usual.
    """

    __slots__ = ()


class MaskedData(dict):
    """A JSON object this module has masked (see `Masked`). Treat it as read-only: a
    value put into it later would skip the storage net."""


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
    masked, hit = mask_card_numbers(text)
    return Masked(masked), found or hit


def redact_data(value: Any, parent: str = "") -> tuple[Any, bool]:
    """Return a copy of parsed JSON with card data masked, and whether any was found."""
    masked, found = _walk(value, False, _is_sensitive_item, parent)
    return (MaskedData(masked) if isinstance(masked, dict) else masked), found


def redact_headers(headers: dict[str, str]) -> tuple[dict[str, str], bool]:
    """Mask secrets and card numbers in header names and values."""
    found = False
    out = {}
    for key, value in headers.items():
        name, hit = mask_card_numbers(str(key))
        found = found or hit
        if _SECRET_HEADER_RE.search(name) and "idempotency" not in name.lower():
            out[name] = MASK
            continue
        out[name], hit = redact_text(str(value))
        found = found or hit
    return MaskedData(out), found


# --- logs ------------------------------------------------------------------------------


class RedactingLogRecordFactory:
    """Mask card numbers in every log record, whoever logs it: the message, the
    traceback of `exc_info` and the stack of `stack_info`."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.base(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logging's problem, not ours
            message = None
        if message is not None:
            masked, found = mask_card_numbers(message)
            if found:
                record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_card_numbers(
                logging.Formatter().formatException(record.exc_info)
            )[0]
        elif record.exc_text:
            record.exc_text = mask_card_numbers(record.exc_text)[0]
        if record.stack_info:
            record.stack_info = mask_card_numbers(record.stack_info)[0]
        return record


class RedactingFormatter(logging.Formatter):
    """Mask card numbers in the finished line, whatever put them there."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_card_numbers(super().format(record))[0]


def install_log_redaction() -> None:
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, RedactingLogRecordFactory):
        logging.setLogRecordFactory(RedactingLogRecordFactory(factory))
