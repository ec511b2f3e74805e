"""Mapping suggestions: which source path most likely fills each Sage Pro field.

Pure functions over plain values (no database, no Django). Given a sample source
record and a target document, `suggest_mappings` scores every source path against
every target field and proposes one path per field, with a confidence in [0, 1] and
the reasons behind it. The steps:

1. Flatten the sample into dot paths: nested objects become `created.at`; a list
   contributes its first element only (`line_items.0.sku`), because a header field is
   never filled from the tenth line of a list.
2. Tokenise each path across naming styles (camelCase, snake_case, dots, digits) and
   expand terse names (`invno` → invoice number, `INVDTE` → invoice date), splitting
   run-together words (`ordernumber`) against a small vocabulary.
3. Score each (field, path) pair: the best match of the path's words against the
   field's phrases, where words in one synonym group count almost as equal and near
   spellings count through rapidfuzz; plus how well the sample value's shape (date,
   amount, identifier, email…) fits the field; plus a little context (billing vs
   shipping, inside a list, names that say tax or shipping rather than a total).
4. Add what admins decided before: `Feedback` about the same target field and the
   same source *key* (the normalised last path segment, so a verdict about
   `invoice_id` also applies to `data.invoice_id` in a similar source). An accepted
   pair adds 0.6, a rejected one takes 0.6 away (net count, capped at two), which is
   enough for one verdict to change the next top-1 answer.
5. Assign greedily by score so that one source path fills at most one field.

Everything is deterministic: ties break on the path name.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from rapidfuzz import fuzz

# -- Target documents -----------------------------------------------------------------


@dataclass(frozen=True)
class TargetField:
    """One field of a Sage Pro gateway document, described for the suggester.

    `phrases` are the names a source might use, each with a weight (1.0 = this is
    exactly the field). `shapes` says how well each value shape fits (0–1); shapes not
    listed fit `other_shapes` (a neutral "could be" unless the field has a strict
    shape, as dates and amounts do). Names containing `avoid_words` lose a little.
    """

    name: str
    label: str
    phrases: tuple[tuple[str, float], ...]
    shapes: Mapping[str, float] = field(default_factory=dict)
    avoid_words: frozenset[str] = frozenset()
    other_shapes: float = 0.4


_AMOUNT_SHAPES = {"amount": 1.0, "integer": 0.65, "empty": 0.45}
_DATE_SHAPES = {"date": 1.0, "datetime": 1.0, "empty": 0.45, "integer": 0.2}
_ID_SHAPES = {
    "identifier": 1.0,
    "code": 0.9,
    "integer": 0.85,
    "long_integer": 0.85,
    "empty": 0.45,
    "amount": 0.1,
    "date": 0.0,
    "datetime": 0.0,
    "email": 0.1,
    "text": 0.25,
}
_TEXT_SHAPES = {"text": 1.0, "word": 0.9, "code": 0.5, "empty": 0.45}
_NOT_A_TOTAL = frozenset({"tax", "shipping", "discount", "fee", "tip", "refund"})
# Lookup tokens and hashes, not the number a person would type into Sage.
_NOT_A_NUMBER = frozenset({"key", "token", "hash", "secret", "signature", "uuid"})

_CUSTNO = TargetField(
    "custno",
    "Customer number",
    (
        ("customer number", 1.0),
        ("customer code", 1.0),
        # PayTrace v3 keeps the merchant's own customer reference here (§5.2).
        ("customer label", 1.0),
        ("account number", 0.75),
        ("customer", 0.85),
    ),
    # Sage customer numbers are short upper-case codes (ACME, BLUEOX).
    {
        **_ID_SHAPES,
        "code": 1.0,
        "identifier": 0.8,
        "integer": 0.75,
        "long_integer": 0.6,
    },
)
_DATE = TargetField(
    "date",
    "Receipt date",
    (
        ("date", 1.0),
        ("payment date", 1.0),
        ("date paid", 1.0),
        ("transaction date", 1.0),
        # The receipt date is when the money came; creation is a close second.
        ("created at", 0.95),
        ("paid at", 0.95),
        ("processed at", 0.9),
        ("timestamp", 0.9),
        ("order date", 0.8),
        ("settled at", 0.7),
        ("settled", 0.6),
        ("updated at", 0.35),
    ),
    _DATE_SHAPES,
    other_shapes=0.05,
)
_AMOUNT = TargetField(
    "amount",
    "Receipt amount",
    (
        ("amount", 1.0),
        ("total amount", 1.0),
        ("payment amount", 1.0),
        ("amount paid", 1.0),
        ("total", 0.95),
        ("grand total", 0.95),
        ("total price", 0.9),
        ("order total", 0.9),
        ("sum", 0.8),
        ("price", 0.5),
    ),
    _AMOUNT_SHAPES,
    _NOT_A_TOTAL,
    other_shapes=0.05,
)
_METHOD = TargetField(
    "method",
    "Payment method",
    (
        ("payment method", 1.0),
        ("method", 1.0),
        ("card brand", 1.0),
        ("card type", 1.0),
        ("tender type", 1.0),
        ("brand", 0.95),
        ("tender", 0.95),
        ("payment type", 0.95),
        ("gateway", 0.85),
        # A masked card number carries the brand in its first digit (a transform).
        ("credit card number", 0.75),
        ("card number", 0.75),
        ("transaction type", 0.5),
        ("through", 0.5),
    ),
    {"tender": 1.0, "masked_card": 0.9, "code": 0.6, "word": 0.5, "empty": 0.4},
)
_REFERENCE = TargetField(
    "reference",
    "Reference (gateway transaction id)",
    (
        ("transaction id", 1.0),
        ("transaction number", 1.0),
        ("payment id", 0.95),
        ("confirmation number", 0.95),
        ("reference", 0.9),
        ("reference number", 0.9),
        ("check number", 0.9),
        ("authorization code", 0.5),
        ("id", 0.7),
    ),
    {**_ID_SHAPES, "long_integer": 1.0, "code": 0.6},
)
_INVNO = TargetField(
    "invno",
    "Invoice number (application)",
    (
        ("invoice number", 1.0),
        ("invoice", 0.95),
        ("bill number", 0.95),
        ("order number", 0.8),
        ("sales order number", 0.8),
        ("order name", 0.6),
        ("document number", 0.6),
        ("number", 0.7),
    ),
    _ID_SHAPES,
    _NOT_A_NUMBER,
)
_GL_ACCOUNT = TargetField(
    "gl_account",
    "GL account",
    (
        ("gl account", 1.0),
        ("general ledger account", 1.0),
        ("ledger account", 1.0),
        ("gl code", 0.9),
        ("revenue account", 0.8),
        ("account code", 0.8),
    ),
    {"gl_account": 1.0, "identifier": 0.7, "code": 0.5, "empty": 0.45},
)

TARGETS: dict[str, tuple[TargetField, ...]] = {
    "cash_receipt": (_CUSTNO, _DATE, _AMOUNT, _METHOD, _REFERENCE, _INVNO, _GL_ACCOUNT),
    "sales_order": (
        TargetField(
            "sono",
            "Sales order number",
            (
                ("sales order number", 1.0),
                ("order number", 1.0),
                ("order id", 0.9),
                ("order", 0.8),
                ("order name", 0.7),
                # A bare `number` on an order record is the order's number.
                ("number", 0.9),
            ),
            _ID_SHAPES,
            _NOT_A_NUMBER,
        ),
        _CUSTNO,
        TargetField(
            "ordate",
            "Order date",
            (
                ("order date", 1.0),
                ("created at", 1.0),
                ("date", 0.95),
                ("placed at", 0.95),
                ("processed at", 0.85),
                ("timestamp", 0.8),
                ("updated at", 0.35),
            ),
            _DATE_SHAPES,
            other_shapes=0.05,
        ),
        TargetField(
            "ordamt",
            "Order amount",
            (
                ("order amount", 1.0),
                ("order total", 1.0),
                ("total price", 1.0),
                ("total", 0.95),
                ("grand total", 0.95),
                ("amount", 0.9),
            ),
            _AMOUNT_SHAPES,
            _NOT_A_TOTAL,
            other_shapes=0.05,
        ),
        TargetField(
            "shpamt",
            "Shipping amount",
            (
                ("shipping amount", 1.0),
                ("shipping total", 1.0),
                ("shipping price", 1.0),
                ("total shipping", 1.0),
                ("freight", 0.9),
                ("shipping", 0.8),
            ),
            _AMOUNT_SHAPES,
            other_shapes=0.05,
        ),
        TargetField(
            "tax",
            "Tax amount",
            (("tax", 1.0), ("tax amount", 1.0), ("total tax", 1.0)),
            _AMOUNT_SHAPES,
            other_shapes=0.05,
        ),
        TargetField(
            "ponum",
            "Customer PO number",
            (
                ("purchase order number", 1.0),
                ("customer purchase order", 0.95),
                ("customer reference", 0.7),
            ),
            _ID_SHAPES,
            _NOT_A_NUMBER,
        ),
        TargetField(
            "shipvia",
            "Ship via",
            (
                ("ship via", 1.0),
                ("shipping method", 1.0),
                ("shipping carrier", 0.95),
                ("carrier", 0.9),
                ("shipping title", 0.7),
            ),
            # A carrier's name (UPS GROUND), not a machine key such as flat_rate.
            {"text": 1.0, "code": 0.9, "word": 0.75, "empty": 0.45, "amount": 0.1},
            frozenset({"id"}),
        ),
    ),
    "customer": (
        _CUSTNO,
        TargetField(
            "company",
            "Customer name",
            (
                ("company", 1.0),
                ("company name", 1.0),
                ("customer name", 1.0),
                ("business name", 0.95),
                ("billing name", 0.9),
                ("name", 0.8),
            ),
            _TEXT_SHAPES,
        ),
        TargetField(
            "contact",
            "Contact",
            (
                ("contact", 1.0),
                ("contact name", 1.0),
                ("first name", 0.7),
                ("full name", 0.7),
            ),
            _TEXT_SHAPES,
        ),
        TargetField(
            "email",
            "Email",
            (("email", 1.0), ("email address", 1.0), ("contact email", 0.95)),
            {"email": 1.0, "empty": 0.45},
            other_shapes=0.05,
        ),
        TargetField(
            "phone",
            "Phone",
            (("phone", 1.0), ("phone number", 1.0), ("telephone", 1.0)),
            {"phone": 1.0, "long_integer": 0.6, "empty": 0.45},
            other_shapes=0.05,
        ),
        TargetField(
            "address1",
            "Address line 1",
            (
                ("address", 1.0),
                ("address line 1", 1.0),
                ("street address", 1.0),
                ("street", 0.95),
            ),
            {"text": 1.0, "empty": 0.45, "email": 0.0, "date": 0.0},
        ),
        TargetField(
            "city",
            "City",
            (("city", 1.0), ("town", 0.9), ("locality", 0.8)),
            {"text": 0.9, "word": 1.0, "empty": 0.45},
        ),
        TargetField(
            "state",
            "State",
            (("state", 1.0), ("province", 0.95), ("region", 0.85)),
            {"code": 1.0, "word": 0.7, "empty": 0.45},
        ),
        TargetField(
            "zip",
            "ZIP",
            (("zip", 1.0), ("postal code", 1.0), ("post code", 1.0)),
            {"zip": 1.0, "integer": 0.6, "empty": 0.45},
        ),
        TargetField(
            "country",
            "Country",
            (("country", 1.0), ("country code", 1.0)),
            {"code": 1.0, "word": 0.8, "empty": 0.45},
        ),
    ),
}

# Below this a field gets no suggestion: better an empty row than a bad guess.
MIN_CONFIDENCE = 0.45
ALTERNATIVES = 3


# A sample is one source record: a few dozen fields, a few levels deep. These bound the
# work a request can ask for (the scoring is fields × keys).
MAX_SAMPLE_KEYS = 500
MAX_SAMPLE_DEPTH = 20


class UnknownTargetError(ValueError):
    pass


class SampleTooLargeError(ValueError):
    """The sample is deeper or has more keys than one source record would."""


def check_sample_size(
    sample: object, max_keys: int = MAX_SAMPLE_KEYS, max_depth: int = MAX_SAMPLE_DEPTH
) -> None:
    """Raise SampleTooLargeError if `sample` nests or holds more than the limits allow.

    Walks without recursion, and stops at the first limit passed, so even a hostile
    value costs at most `max_keys` steps.
    """
    keys = 0
    stack: list[tuple[object, int]] = [(sample, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children = list(value.values())
            keys += len(children)
        elif isinstance(value, list):
            children = value[:1]  # Only the first element is read (see `flatten`).
        else:
            continue
        if depth > max_depth:
            raise SampleTooLargeError(
                f"The sample nests more than {max_depth} levels deep; send one "
                "source record."
            )
        if keys > max_keys:
            raise SampleTooLargeError(
                f"The sample has more than {max_keys} keys; send one source record."
            )
        stack += [(child, depth + 1) for child in children]


# -- Results --------------------------------------------------------------------------


@dataclass(frozen=True)
class Feedback:
    """An admin's verdict on `target_field ← (a path whose key is) source_key`."""

    target_field: str
    source_key: str
    accepted: bool


@dataclass(frozen=True)
class Candidate:
    source_path: str
    confidence: float
    reasons: tuple[str, ...]
    score: float = 0.0  # unclamped, for ranking


@dataclass(frozen=True)
class Suggestion:
    target_field: str
    source_path: str | None
    confidence: float
    reasons: tuple[str, ...]
    alternatives: tuple[Candidate, ...] = ()

    def as_dict(self) -> dict:
        return {
            "target_field": self.target_field,
            "source_path": self.source_path,
            "confidence": self.confidence,
            "reasons": list(self.reasons),
            "alternatives": [
                {"source_path": c.source_path, "confidence": c.confidence}
                for c in self.alternatives
            ],
        }


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
_SYNONYM = 0.85
# Words that say little on their own: `street_address` is not an email address.
GENERIC_WORDS = frozenset(
    "number id address name title code line type at on by to".split()  # noqa: SIM905
)
_GENERIC = 0.4
_GROUP_OF = {word: group for group in SYNONYMS for word in group}

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
_SHAPE_NAMES = {
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


# -- Scoring --------------------------------------------------------------------------

_NAME_WEIGHT = 0.72
_SHAPE_WEIGHT = 0.25
_PARENT_WEIGHT = 0.5
_FEEDBACK_STEP = 0.6
_FEEDBACK_CAP = 2
_MIN_NAME = 0.45


@dataclass(frozen=True)
class _Source:
    path: str
    value: Any
    words: tuple[tuple[str, float], ...]  # (word, weight): the leaf counts more
    leaf: str
    key: str
    shape: str
    in_list: bool


def _describe_source(path: str, value: Any) -> _Source:
    segments = path.split(".")
    in_list = any(s.isdigit() for s in segments)
    named = [s for s in segments if not s.isdigit()]
    leaf = named[-1] if named else path
    words: list[tuple[str, float]] = []
    for segment in named[:-1]:
        words += [(w, _PARENT_WEIGHT) for w in tokenize(segment)]
    words += [(w, 1.0) for w in tokenize(leaf)]
    return _Source(
        path=path,
        value=value,
        words=tuple(words),
        leaf=leaf,
        key=source_key(path),
        shape=value_shape(value),
        in_list=in_list,
    )


def _word_similarity(a: str, b: str) -> float:
    if a == b:
        return 1.0
    group = _GROUP_OF.get(a)
    if group is not None and b in group:
        return _SYNONYM
    if min(len(a), len(b)) >= 5:
        ratio = fuzz.ratio(a, b)
        if ratio >= 85:
            return 0.9 * ratio / 100
    return 0.0


@cache
def _phrase_words(phrase: str) -> tuple[str, ...]:
    return tuple(tokenize(phrase))


@dataclass(frozen=True)
class _NameMatch:
    score: float
    phrase: str
    via: tuple[str, ...]  # "id≈number" for synonym or near-spelling matches


def _match_phrase(phrase: str, weight: float, source: _Source) -> _NameMatch:
    wanted = _phrase_words(phrase)
    if not wanted or not source.words:
        return _NameMatch(0.0, phrase, ())
    via: list[str] = []
    recall = 0.0
    for w in wanted:
        best, best_word = 0.0, ""
        for word, _ in source.words:
            sim = _word_similarity(w, word)
            if sim > best:
                best, best_word = sim, word
        recall += _informative(w) * best
        if 0 < best < 1:
            via.append(f"{best_word}≈{w}")
    recall /= sum(_informative(w) for w in wanted)
    # Precision: how much of the name the phrase explains. Parent words only count
    # when they match (`billing_address.company` is as much a company as `company`).
    matched = total = 0.0
    for word, weight_ in source.words:
        sim = max(_word_similarity(w, word) for w in wanted)
        if weight_ < 1.0 and sim == 0:
            continue
        matched += weight_ * _informative(word) * sim
        total += weight_ * _informative(word)
    precision = matched / total if total else 0.0
    if recall + precision == 0:
        return _NameMatch(0.0, phrase, ())
    f_score = 2 * recall * precision / (recall + precision)
    return _NameMatch(f_score * weight, phrase, tuple(via))


def _informative(word: str) -> float:
    return _GENERIC if word in GENERIC_WORDS else 1.0


def _match_name(target: TargetField, source: _Source) -> _NameMatch:
    best = _NameMatch(0.0, "", ())
    phrases = ((target.name, 1.0), *target.phrases)
    for phrase, weight in phrases:
        match = _match_phrase(phrase, weight, source)
        if match.score > best.score:
            best = match
    # A run-together or misspelt leaf the tokeniser could not split ("invoicenmbr").
    leaf_words = tokenize(source.leaf)
    if len(leaf_words) != 1 or leaf_words[0] in VOCABULARY:
        return best
    leaf = leaf_words[0]
    for phrase, weight in phrases:
        ratio = fuzz.ratio(leaf, phrase.replace(" ", ""))
        score = 0.9 * ratio / 100 * weight
        if ratio >= 80 and score > best.score:
            best = _NameMatch(score, phrase, (f"{source.leaf}≈{phrase}",))
    return best


def _name_reason(match: _NameMatch, source: _Source) -> str:
    words = " ".join(_phrase_words(match.phrase))
    phrase = match.phrase if words == match.phrase else f"{match.phrase} = {words}"
    expanded = " ".join(w for w, weight in source.words if weight == 1.0)
    leaf = source.leaf
    terse = leaf.lower().replace("_", "") not in (
        expanded.replace(" ", ""),
        expanded.replace(" ", "") + "s",
    )
    read_as = f", read as '{expanded}'" if terse and expanded else ""
    if match.via:
        return (
            f"name matches synonym '{phrase}' ({source.path}{read_as}; "
            f"{', '.join(match.via)}): {match.score:.2f}"
        )
    return f"name matches '{phrase}' ({source.path}{read_as}): {match.score:.2f}"


def _shape_fit(target: TargetField, source: _Source) -> tuple[float, str]:
    fit = target.shapes.get(source.shape, target.other_shapes)
    shown = _shown(source.value)
    noun = _SHAPE_NAMES.get(source.shape, source.shape)
    if source.shape == "empty":
        return fit, "value is empty in the sample, so its shape says nothing"
    if source.shape == "masked_card" and fit >= 0.5:
        return fit, f"value looks like {noun}: {shown} (the brand needs a transform)"
    if fit >= 0.85:
        return fit, f"value looks like {noun}: {shown}"
    if fit <= 0.2:
        return fit, f"value looks like {noun}, which does not fit: {shown}"
    return fit, f"value looks like {noun}: {shown} (possible)"


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _context(
    target: TargetField, source: _Source, document: str
) -> tuple[float, list[str]]:
    adjust, reasons = 0.0, []
    words = {w for w, _ in source.words}
    if target.avoid_words & words:
        adjust -= 0.2
        said = ", ".join(sorted(target.avoid_words & words))
        reasons.append(f"name says '{said}': usually not the {target.label.lower()}")
    if source.in_list:
        adjust -= 0.08
        reasons.append("inside a list (first element only)")
    if document == "customer":
        if words & {"shipping", "delivery"}:
            adjust -= 0.05
            reasons.append("a shipping address, the customer record wants billing")
        elif words & {"billing", "customer"}:
            adjust += 0.03
    return adjust, reasons


def _feedback_prior(
    target: TargetField, source: _Source, feedback: Sequence[Feedback]
) -> tuple[float, list[str]]:
    accepted = sum(
        1
        for f in feedback
        if f.accepted and f.target_field == target.name and f.source_key == source.key
    )
    rejected = sum(
        1
        for f in feedback
        if not f.accepted
        and f.target_field == target.name
        and f.source_key == source.key
    )
    if not (accepted or rejected):
        return 0.0, []
    net = max(-_FEEDBACK_CAP, min(_FEEDBACK_CAP, accepted - rejected))
    said = []
    if accepted:
        said.append(f"accepted {accepted}×")
    if rejected:
        said.append(f"rejected {rejected}×")
    reason = f"admins {' and '.join(said)} '{source.key}' for {target.name} before"
    return net * _FEEDBACK_STEP, [reason]


def score_candidate(
    target: TargetField,
    source: _Source,
    document: str,
    feedback: Sequence[Feedback] = (),
) -> Candidate:
    name = _match_name(target, source)
    fit, shape_reason = _shape_fit(target, source)
    adjust, context_reasons = _context(target, source, document)
    prior, feedback_reasons = _feedback_prior(target, source, feedback)
    score = _NAME_WEIGHT * name.score + _SHAPE_WEIGHT * fit + adjust + prior
    if name.score < _MIN_NAME and not prior:
        # A value's shape alone (any date, any amount) is not a reason to map it.
        score = min(score, MIN_CONFIDENCE - 0.01)
    reasons = []
    if name.score > 0:
        reasons.append(_name_reason(name, source))
    reasons += [shape_reason, *context_reasons, *feedback_reasons]
    confidence = round(min(1.0, max(0.0, score)), 2)
    return Candidate(source.path, confidence, tuple(reasons), score)


# -- The entry point ------------------------------------------------------------------


def target_fields(target: str) -> tuple[TargetField, ...]:
    try:
        return TARGETS[target]
    except KeyError:
        known = ", ".join(TARGETS)
        raise UnknownTargetError(
            f"Unknown target '{target}'; choose one of {known}."
        ) from None


def suggest_mappings(
    target: str,
    sample: Mapping[str, Any],
    feedback: Iterable[Feedback] = (),
) -> list[Suggestion]:
    """Propose a source path for each field of `target`, best first per field.

    `feedback` holds earlier verdicts about this target document (any order).
    Returns one `Suggestion` per target field, in the document's field order; a field
    with no candidate above `MIN_CONFIDENCE` gets `source_path=None`.
    """
    fields = target_fields(target)
    if not isinstance(sample, Mapping):
        raise TypeError("The sample must be a JSON object.")
    check_sample_size(sample)
    # Each candidate sees only the verdicts about its own field and key, so the work
    # stays fields × keys however much feedback has piled up.
    verdicts: dict[tuple[str, str], list[Feedback]] = defaultdict(list)
    for verdict in feedback:
        verdicts[verdict.target_field, verdict.source_key].append(verdict)
    sources = [_describe_source(p, v) for p, v in sorted(flatten(sample).items())]
    ranked: dict[str, list[Candidate]] = {}
    for target_field in fields:
        candidates = [
            score_candidate(
                target_field, s, target, verdicts.get((target_field.name, s.key), ())
            )
            for s in sources
        ]
        candidates.sort(key=lambda c: (-c.score, c.source_path))
        ranked[target_field.name] = candidates
    chosen = _assign(ranked)
    suggestions = []
    for target_field in fields:
        candidates = ranked[target_field.name]
        pick = chosen.get(target_field.name)
        others = tuple(
            c for c in candidates if c is not pick and c.score >= MIN_CONFIDENCE
        )[:ALTERNATIVES]
        if pick is None:
            suggestions.append(
                Suggestion(
                    target_field.name,
                    None,
                    0.0,
                    ("no source field looks like it",),
                    others,
                )
            )
        else:
            suggestions.append(
                Suggestion(
                    target_field.name,
                    pick.source_path,
                    pick.confidence,
                    pick.reasons,
                    others,
                )
            )
    return suggestions


def _assign(ranked: Mapping[str, list[Candidate]]) -> dict[str, Candidate]:
    """Greedy one-to-one assignment: the highest score anywhere is taken first."""
    pairs = [
        (c.score, name, c)
        for name, candidates in ranked.items()
        for c in candidates
        if c.score >= MIN_CONFIDENCE
    ]
    pairs.sort(key=lambda p: (-p[0], p[1], p[2].source_path))
    chosen: dict[str, Candidate] = {}
    used: set[str] = set()
    for _, name, candidate in pairs:
        if name in chosen or candidate.source_path in used:
            continue
        chosen[name] = candidate
        used.add(candidate.source_path)
    return chosen
