"""The Sage Pro documents the suggester fills: each target field, its names and value shapes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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
        # PayTrace v3 keeps the merchant's own customer reference as the customer label.
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
