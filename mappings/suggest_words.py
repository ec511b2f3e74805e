"""How the suggester reads source field names and values: words, paths and value shapes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

# -- Words ----------------------------------------------------------------------------

# Terse and abbreviated names → words. Sage Pro's column names are the main source.
ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "invno": ("invoice", "number"),
    "invnum": ("invoice", "number"),
    "inv": ("invoice",),
    "invdte": ("invoice", "date"),
    "invamt": ("invoice", "amount"),
    "custno": ("customer", "number"),
    "custnum": ("customer", "number"),
    "cust": ("customer",),
    "cid": ("customer", "id"),
    "amt": ("amount",),
    "dte": ("date",),
    "dt": ("date",),
    "ts": ("timestamp",),
    "ref": ("reference",),
    "refno": ("reference", "number"),
    "txn": ("transaction",),
    "trx": ("transaction",),
    "tran": ("transaction",),
    "trans": ("transaction",),
    "tx": ("transaction",),
    "no": ("number",),
    "num": ("number",),
    "nbr": ("number",),
    "nr": ("number",),
    "sono": ("sales", "order", "number"),
    "ornum": ("order", "number"),
    "ord": ("order",),
    "ordamt": ("order", "amount"),
    "ordate": ("order", "date"),
    "sodate": ("order", "date"),
    "ponum": ("purchase", "order", "number"),
    "pono": ("purchase", "order", "number"),
    "po": ("purchase", "order"),
    "paidamt": ("paid", "amount"),
    "payamt": ("payment", "amount"),
    "pmt": ("payment",),
    "pymt": ("payment",),
    "pay": ("payment",),
    "paydte": ("payment", "date"),
    "paymeth": ("payment", "method"),
    "meth": ("method",),
    "shipvia": ("ship", "via"),
    "shpamt": ("shipping", "amount"),
    "shp": ("shipping",),
    "ship": ("shipping",),
    "addr": ("address",),
    "address1": ("address", "line", "1"),
    "zipcode": ("zip",),
    "postcode": ("post", "code"),
    "tel": ("telephone",),
    "qty": ("quantity",),
    "desc": ("description",),
    "descrip": ("description",),
    "glacnt": ("gl", "account"),
    "acnt": ("account",),
    "acct": ("account",),
    "fname": ("first", "name"),
    "lname": ("last", "name"),
    "cc": ("credit", "card"),
    "ccy": ("currency",),
    "tot": ("total",),
    "chkno": ("check", "number"),
    "co": ("company",),
}

# Words in one group stand for the same thing in the payments/ERP domain.
SYNONYMS: tuple[frozenset[str], ...] = (
    frozenset({"invoice", "bill"}),
    frozenset({"customer", "client", "buyer", "payer", "purchaser", "member"}),
    frozenset({"number", "id", "identifier", "no"}),
    frozenset({"amount", "total", "sum", "value", "charge", "gross", "price"}),
    frozenset(
        {"date", "day", "created", "at", "on", "time", "timestamp", "datetime", "when"}
    ),
    frozenset({"method", "type", "tender", "brand", "mode", "instrument"}),
    frozenset({"reference", "confirmation"}),
    frozenset({"payment", "paid"}),
    frozenset({"email", "mail"}),
    frozenset({"phone", "telephone", "mobile", "cell"}),
    frozenset({"company", "business", "organization", "organisation"}),
    frozenset({"zip", "postal", "post"}),
    frozenset({"state", "province", "region"}),
    frozenset({"street", "address", "line"}),
    frozenset({"shipping", "delivery", "freight"}),
    frozenset({"carrier", "courier"}),
)
SYNONYM = 0.85
# Words that say little on their own: `street_address` is not an email address.
GENERIC_WORDS = frozenset(
    "number id address name title code line type at on by to".split()  # noqa: SIM905
)
GENERIC = 0.4
GROUP_OF = {word: group for group in SYNONYMS for word in group}

# Wrapper keys that say nothing about the field (v3 nests everything in `data`).
STOPWORDS = frozenset(
    {"data", "attributes", "attrs", "record", "result", "payload", "object", "the"}
)

# Words the run-together splitter may use, besides the abbreviations.
VOCABULARY = frozenset(
    (  # noqa: SIM905 (a word list reads better as one string)
        "invoice number customer amount date created at order total price "
        "reference transaction method payment type card brand credit masked "
        "billing shipping address street city state zip postal country email "
        "phone name first last company label id sales purchase ship via tax "
        "discount fee paid settled processed updated placed gateway tender "
        "confirmation account gl ledger general code status description line "
        "items item sku quantity currency grand sum value subtotal current check"
    ).split()
).union(*SYNONYMS)


def tokenize(name: str) -> list[str]:
    """Words in a field name or dot path, abbreviations expanded.

    `invoiceId`, `invoice_id`, `INVOICE-ID` → invoice, id; `INVNO` → invoice, number.
    """
    words: list[str] = []
    for raw in _split(name):
        words.extend(_expand(raw))
    return [w for w in words if w not in STOPWORDS]


def _split(name: str) -> list[str]:
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", name)
    name = re.sub(r"([a-zA-Z])([0-9])", r"\1 \2", name)
    return [part.lower() for part in re.split(r"[^A-Za-z0-9]+", name) if part]


@cache
def _expand(token: str) -> tuple[str, ...]:
    if token in ABBREVIATIONS:
        return ABBREVIATIONS[token]
    if token in VOCABULARY or token.isdigit() or len(token) < 5:
        return (token,)
    for suffix in ("ed", "s"):  # emailed → email, totals → total
        stem = token.removesuffix(suffix)
        if stem != token and stem in VOCABULARY:
            return (stem,)
    pieces = _segment(token)
    if pieces is None:
        return (token,)
    return tuple(w for piece in pieces for w in ABBREVIATIONS.get(piece, (piece,)))


def _segment(token: str) -> list[str] | None:
    """Split `ordernumber` into known words (fewest pieces), or None."""
    known = VOCABULARY | {k for k in ABBREVIATIONS if len(k) >= 2}
    best: list[list[str] | None] = [None] * (len(token) + 1)
    best[0] = []
    for end in range(1, len(token) + 1):
        for start in range(end):
            piece = token[start:end]
            prior = best[start]
            if prior is not None and piece in known:
                candidate = [*prior, piece]
                current = best[end]
                if current is None or len(candidate) < len(current):
                    best[end] = candidate
    return best[len(token)]


def source_key(path: str) -> str:
    """The normalised last segment of a path: `data.invoiceId` → `invoice_id`."""
    segments = [s for s in path.split(".") if s and not s.isdigit()]
    last = segments[-1] if segments else path
    return "_".join(_split(last)) or last.lower()


# -- Flattening -----------------------------------------------------------------------


def flatten(sample: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dot paths to scalar values. Lists contribute their first element (`x.0.y`)."""
    flat: dict[str, Any] = {}
    for key, value in sample.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{path}."))
        elif isinstance(value, list):
            if value and isinstance(value[0], Mapping):
                flat.update(flatten(value[0], f"{path}.0."))
            elif value:
                flat[f"{path}.0"] = value[0]
        else:
            flat[path] = value
    return flat


# -- Value shapes ---------------------------------------------------------------------

_DATE_PATTERNS = (
    re.compile(r"^\d{4}-\d{2}-\d{2}$"),
    re.compile(r"^\d{1,2}/\d{1,2}/\d{2,4}$"),
)
_DATETIME_PATTERNS = (
    re.compile(
        r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$"
    ),
    re.compile(r"^\d{1,2}/\d{1,2}/\d{2,4}\s+\d{1,2}:\d{2}(:\d{2})?(\s*[AP]M)?$", re.I),
)
_MONEY = re.compile(r"^[-+]?[$€£]?\s?\d{1,3}(,?\d{3})*(\.\d{1,2})$|^[-+]?[$€£]\s?\d+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\+?[\d\s().-]{7,20}$")
_ZIP = re.compile(r"^\d{5}(-\d{4})?$|^[A-Z]\d[A-Z] ?\d[A-Z]\d$")
_MASKED_CARD = re.compile(r"^[\d*xX•]{0,6}[*xX•]{4,}\d{2,4}$")
_GL_ACCOUNT = re.compile(r"^\d{3,6}-\d{2,4}$")
_TENDERS = frozenset(
    (  # noqa: SIM905
        "visa mastercard mc amex discover diners jcb card credit_card debit ach check "
        "cheque cash paypal stripe shopify_payments bank_transfer bacs cod wire"
    ).split()
    + ["american express", "credit card"]
)
SHAPE_NAMES = {
    "date": "a date",
    "datetime": "a date and time",
    "amount": "an amount",
    "integer": "a whole number",
    "long_integer": "a long numeric id",
    "identifier": "an identifier",
    "code": "a short code",
    "tender": "a payment method",
    "masked_card": "a masked card number",
    "email": "an email address",
    "phone": "a phone number",
    "zip": "a ZIP code",
    "gl_account": "a GL account",
    "word": "a word",
    "text": "text",
    "bool": "a yes/no flag",
    "empty": "empty",
}


def value_shape(value: Any) -> str:
    """What a sample value looks like: `date`, `amount`, `email`, `identifier`…"""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "empty"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, date):
        return "date"
    if isinstance(value, float | Decimal):
        return "integer" if value == int(value) and "." not in str(value) else "amount"
    if isinstance(value, int):
        return "long_integer" if abs(value) >= 1_000_000 else "integer"
    text = str(value).strip()
    if any(p.match(text) for p in _DATETIME_PATTERNS):
        return "datetime"
    if any(p.match(text) for p in _DATE_PATTERNS):
        return "date"
    if text.lower() in _TENDERS:
        return "tender"
    if _EMAIL.match(text):
        return "email"
    if _MASKED_CARD.match(text):
        return "masked_card"
    if _GL_ACCOUNT.match(text):
        return "gl_account"
    if _ZIP.match(text):
        return "zip"
    if _MONEY.match(text):
        return "amount"
    if text.isdigit():
        return "long_integer" if len(text) >= 7 else "integer"
    if _PHONE.match(text) and sum(c.isdigit() for c in text) >= 7:
        return "phone"
    if " " in text:
        return "text"
    if len(text) <= 10 and text.isalpha() and text.isupper():
        return "code"
    if any(c.isdigit() for c in text) and len(text) <= 40:
        return "identifier"
    if len(text) <= 10 and text.replace("_", "").isalnum() and text.isupper():
        return "code"
    return "word"
