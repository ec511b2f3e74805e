"""Storefront order-to-cash: pure rules over plain values.

- `parse_order` / `parse_refund`: a Shopify-style order (or refund) body as typed values,
  or `OrderShapeError` naming every field the flow would trip on.
- `order_reference`: which storefront order a PayTrace `invoice_id` names (`#1001`,
  `1001`, `SHOP-1001` with a configured prefix), through `mappings.references`.
- `new_customer_number`: the new Sage Pro customer number rule (letters of the name
  plus a sequence, upper case, never longer than Sage Pro's 6, never clashing).
- `sales_order_lines` / `SalesOrder`: order lines as Sage Pro sales order lines, and
  the one sales order shape up to the connector edge (`as_payload()`).
"""

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from mappings.references import reference_key, strip_prefix_words

CENT = Decimal("0.01")
MAX_MONEY = Decimal("999999999999.99")
MAX_QUANTITY = Decimal("9999999.99")
CUSTNO_WIDTH = 6  # Sage Pro's ARCUST.CUSTNO
ITEM_WIDTH = 20
DESCRIPTION_WIDTH = 35
LOCATION_WIDTH = 6
MAX_LINES = 200
# The order reference Sage Pro keeps on the sales order (SOMAST.REF).
REFERENCE_WIDTH = 20
_DIGITS = re.compile(r"[0-9]{1,18}")
_LETTERS = re.compile(r"[A-Z]")
_RUN = re.compile(r"[A-Z0-9]+")


class OrderShapeError(ValueError):
    """A body the flow cannot read; `errors` names each field and what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class Address:
    name: str = ""
    company: str = ""
    address1: str = ""
    address2: str = ""
    city: str = ""
    state: str = ""
    zip: str = ""
    country: str = ""
    phone: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "company": self.company,
            "address1": self.address1,
            "address2": self.address2,
            "city": self.city,
            "state": self.state,
            "zip": self.zip,
            "country": self.country,
            "phone": self.phone,
        }


@dataclass(frozen=True)
class OrderLine:
    sku: str
    title: str
    quantity: Decimal
    price: Decimal
    taxable: bool = True
    location: str = ""

    @property
    def extended(self) -> Decimal:
        return (self.quantity * self.price).quantize(CENT)


@dataclass(frozen=True)
class Order:
    """A storefront order as the flow reads it."""

    order_id: str
    name: str
    number: str
    email: str
    customer_id: str
    customer_name: str
    billing: Address
    ship_to: Address
    currency: str
    subtotal: Decimal
    tax: Decimal
    freight: Decimal
    total: Decimal
    financial_status: str
    cancelled: bool
    lines: tuple[OrderLine, ...]


@dataclass(frozen=True)
class Refund:
    refund_id: str
    order_id: str
    amount: Decimal
    note: str = ""


class _Reader:
    """Reads fields off a JSON object, collecting every problem by its path."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def obj(self, data: Any, path: str, *, required: bool = False) -> Mapping[str, Any]:
        if data is None and not required:
            return {}
        if not isinstance(data, Mapping):
            self.errors[path] = "must be an object"
            return {}
        return data

    def text(
        self, data: Mapping[str, Any], key: str, path: str, *, limit: int = 200
    ) -> str:
        value = data.get(key)
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.errors[f"{path}{key}"] = "must be text"
            return ""
        text = _clean(str(value))
        if len(text) > limit:
            self.errors[f"{path}{key}"] = f"is longer than {limit} characters"
            return ""
        return text

    def ident(self, data: Mapping[str, Any], key: str, path: str) -> str:
        value = data.get(key)
        text = self.text(data, key, path, limit=40)
        if f"{path}{key}" not in self.errors and not text:
            self.errors[f"{path}{key}"] = "is required"
        return text if value is not None else ""

    def money(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: Decimal | None = Decimal("0.00"),
    ) -> Decimal:
        value = data.get(key)
        if value is None or value == "":
            if default is None:
                self.errors[f"{path}{key}"] = "is required"
                return Decimal("0.00")
            return default
        amount = _decimal(value)
        if amount is None or not (Decimal(0) <= amount <= MAX_MONEY):
            self.errors[f"{path}{key}"] = "must be an amount from 0 to 999999999999.99"
            return Decimal("0.00")
        if amount != amount.quantize(CENT):
            self.errors[f"{path}{key}"] = "has more than 2 decimal places"
            return Decimal("0.00")
        return amount.quantize(CENT)


def _clean(text: str) -> str:
    """Printable text on one line (NUL and control characters dropped)."""
    text = unicodedata.normalize("NFC", text)
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal | float):
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() else None


def _address(reader: _Reader, data: Any, path: str) -> Address:
    obj = reader.obj(data, path.rstrip("."))
    first = reader.text(obj, "first_name", path, limit=60)
    last = reader.text(obj, "last_name", path, limit=60)
    name = reader.text(obj, "name", path, limit=120) or f"{first} {last}".strip()
    return Address(
        name=name,
        company=reader.text(obj, "company", path, limit=120),
        address1=reader.text(obj, "address1", path),
        address2=reader.text(obj, "address2", path),
        city=reader.text(obj, "city", path, limit=60),
        state=reader.text(obj, "province_code", path, limit=20)
        or reader.text(obj, "province", path, limit=60),
        zip=reader.text(obj, "zip", path, limit=20),
        country=reader.text(obj, "country_code", path, limit=20)
        or reader.text(obj, "country", path, limit=60),
        phone=reader.text(obj, "phone", path, limit=40),
    )


def _lines(reader: _Reader, data: Any) -> tuple[OrderLine, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        reader.errors["line_items"] = "must be a list"
        return ()
    if len(data) > MAX_LINES:
        reader.errors["line_items"] = f"has more than {MAX_LINES} lines"
        return ()
    lines = []
    for n, raw in enumerate(data):
        path = f"line_items.{n}."
        obj = reader.obj(raw, path.rstrip("."), required=True)
        quantity = _decimal(obj.get("quantity"))
        if quantity is None or not (Decimal(0) < quantity <= MAX_QUANTITY):
            reader.errors[f"{path}quantity"] = "must be a number above 0"
            quantity = Decimal(0)
        elif quantity != quantity.quantize(CENT):
            reader.errors[f"{path}quantity"] = "has more than 2 decimal places"
        taxable = obj.get("taxable", True)
        if not isinstance(taxable, bool):
            reader.errors[f"{path}taxable"] = "must be true or false"
            taxable = True
        lines.append(
            OrderLine(
                sku=reader.text(obj, "sku", path, limit=60),
                title=reader.text(obj, "title", path),
                quantity=quantity.quantize(CENT) if quantity else quantity,
                price=reader.money(obj, "price", path, default=None),
                taxable=taxable,
            )
        )
    return tuple(lines)


def _freight(reader: _Reader, body: Mapping[str, Any]) -> Decimal:
    shipping = body.get("shipping_lines")
    if shipping is None:
        return Decimal("0.00")
    if not isinstance(shipping, list) or len(shipping) > MAX_LINES:
        reader.errors["shipping_lines"] = "must be a list"
        return Decimal("0.00")
    total = Decimal("0.00")
    for n, raw in enumerate(shipping):
        obj = reader.obj(raw, f"shipping_lines.{n}", required=True)
        total += reader.money(obj, "price", f"shipping_lines.{n}.")
    return total


def parse_order(body: Any) -> Order:
    """The order a webhook body carries; `OrderShapeError` names what is wrong."""
    reader = _Reader()
    data = reader.obj(body, "body", required=True)
    if reader.errors:
        raise OrderShapeError(reader.errors)
    customer = reader.obj(data.get("customer"), "customer")
    billing = _address(reader, data.get("billing_address"), "billing_address.")
    ship_to = _address(reader, data.get("shipping_address"), "shipping_address.")
    first = reader.text(customer, "first_name", "customer.", limit=60)
    last = reader.text(customer, "last_name", "customer.", limit=60)
    customer_name = (
        billing.company or f"{first} {last}".strip() or billing.name or ship_to.name
    )
    name = reader.text(data, "name", "", limit=40)
    number = reader.text(data, "order_number", "", limit=40)
    if not name and not number:
        reader.errors["name"] = "is required (or order_number)"
    currency = reader.text(data, "currency", "", limit=3).upper() or "USD"
    cancelled = data.get("cancelled_at") not in (None, "")
    order = Order(
        order_id=reader.ident(data, "id", ""),
        name=name or f"#{number}",
        number=number,
        email=reader.text(data, "email", "", limit=254)
        or reader.text(customer, "email", "customer.", limit=254),
        customer_id=reader.text(customer, "id", "customer.", limit=40),
        customer_name=customer_name[:120],
        billing=billing,
        ship_to=ship_to,
        currency=currency,
        subtotal=reader.money(data, "subtotal_price", ""),
        tax=reader.money(data, "total_tax", ""),
        freight=_freight(reader, data),
        total=reader.money(data, "total_price", "", default=None),
        financial_status=reader.text(data, "financial_status", "", limit=30),
        cancelled=cancelled,
        lines=_lines(reader, data.get("line_items")),
    )
    if not order.lines and "line_items" not in reader.errors:
        reader.errors["line_items"] = "must hold at least one line"
    if reader.errors:
        raise OrderShapeError(reader.errors)
    return order


def parse_refund(body: Any) -> Refund:
    """A `refunds/create` body: the refund, its order, and the amount refunded."""
    reader = _Reader()
    data = reader.obj(body, "body", required=True)
    if reader.errors:
        raise OrderShapeError(reader.errors)
    amount = Decimal("0.00")
    transactions = data.get("transactions")
    if transactions is not None and not isinstance(transactions, list):
        reader.errors["transactions"] = "must be a list"
    for n, raw in enumerate(
        transactions or [] if isinstance(transactions, list) else []
    ):
        obj = reader.obj(raw, f"transactions.{n}", required=True)
        if obj.get("kind", "refund") == "refund":
            amount += reader.money(obj, "amount", f"transactions.{n}.")
    refund = Refund(
        refund_id=reader.ident(data, "id", ""),
        order_id=reader.ident(data, "order_id", ""),
        amount=amount,
        note=reader.text(data, "note", "", limit=200),
    )
    if reader.errors:
        raise OrderShapeError(reader.errors)
    return refund


# --- which order a payment names -------------------------------------------------------


@dataclass(frozen=True)
class OrderReference:
    """The order number a PayTrace reference names. `explicit`: written the way only
    a storefront order is (`#1001`, `SHOP-1001`), so it waits for its order; a bare
    number may be an invoice and counts only when such an order exists."""

    key: str
    explicit: bool


def order_key(value: object) -> str:
    """The comparable key of an order name or number (`#1001` and `1001` → `1001`)."""
    return reference_key(value, ())


def order_reference(reference: str, prefix: str = "") -> OrderReference | None:
    """The order `reference` names, or None when it names none."""
    text = unicodedata.normalize("NFKC", _clean(str(reference or ""))[:60]).upper()
    if not text:
        return None
    explicit = text.startswith("#")
    prefix_word = _clean(prefix).upper().strip(" .:#-")
    if prefix_word:
        stripped, removed = strip_prefix_words(text, (prefix_word,))
        if removed:
            text, explicit = stripped, True
    runs = _RUN.findall(text)
    if len(runs) != 1:  # "10001, 10002" names two numbers, not an order
        return None
    key = order_key(runs[0])
    if not _DIGITS.fullmatch(key):
        return None
    return OrderReference(key, explicit)


# --- the Sage Pro customer number ------------------------------------------------------


def customer_number_base(name: str, email: str = "") -> str:
    """The letters a new customer number starts with: of the name, else the e-mail."""
    for source in (name, email.split("@")[0]):
        plain = unicodedata.normalize("NFKD", source).encode("ascii", "ignore")
        letters = "".join(_LETTERS.findall(plain.decode().upper()))
        if letters:
            return letters
    return "WEB"


def new_customer_number(
    name: str,
    email: str,
    is_taken: Callable[[str], bool],
    *,
    width: int = CUSTNO_WIDTH,
    letters: int = 4,
) -> str:
    """A new customer number: up to `letters` letters of the name, then a sequence
    (`ADAB01`, `ADAB02`…), upper case, at most `width` characters, never one
    `is_taken` says exists. Fewer letters leave room for a longer sequence."""
    base = customer_number_base(name, email)
    for keep in range(min(letters, width - 1), 0, -1):
        digits = width - keep
        for n in range(1, min(10**digits, 10_000)):
            candidate = f"{base[:keep]}{n:0{min(digits, 2)}d}"
            if len(candidate) <= width and not is_taken(candidate):
                return candidate
    raise ValueError("no free customer number")


# --- the sales order -------------------------------------------------------------------


@dataclass(frozen=True)
class SalesOrderLine:
    item: str
    description: str
    quantity: Decimal
    price: Decimal
    location: str
    taxable: bool

    def as_payload(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "description": self.description,
            "quantity": f"{self.quantity.quantize(CENT):f}",
            "price": f"{self.price.quantize(CENT):f}",
            "location": self.location,
            "taxable": self.taxable,
        }


@dataclass(frozen=True)
class SalesOrder:
    """The Sage Pro sales order an order becomes (`POST /sales-orders`)."""

    custno: str
    date: date
    reference: str
    ponum: str
    ship_to: Address
    lines: tuple[SalesOrderLine, ...]
    tax: Decimal
    freight: Decimal
    invoice: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> Decimal:
        return sum((ln.quantity * ln.price for ln in self.lines), Decimal(0)).quantize(
            CENT
        ) + (self.tax + self.freight).quantize(CENT)

    def as_payload(self) -> dict[str, Any]:
        ship = self.ship_to
        return {
            "custno": self.custno,
            "date": self.date.isoformat(),
            "reference": self.reference,
            "ponum": self.ponum,
            "ship_to": {
                "name": (ship.company or ship.name)[:35],
                "address1": ship.address1[:35],
                "address2": ship.address2[:35],
                "city": ship.city[:20],
                "state": ship.state[:10],
                "zip": ship.zip[:10],
                "country": ship.country[:15],
            },
            "lines": [line.as_payload() for line in self.lines],
            "tax": f"{self.tax.quantize(CENT):f}",
            "freight": f"{self.freight.quantize(CENT):f}",
            "invoice": self.invoice,
        }


def item_code(sku: str) -> str:
    """The Sage Pro item a storefront SKU names: upper case, trimmed."""
    return _clean(sku).upper()[:ITEM_WIDTH]


def sales_order_lines(
    lines: Iterable[OrderLine], default_location: str
) -> tuple[SalesOrderLine, ...]:
    """Each order line as a sales order line, at its location or the default one."""
    return tuple(
        SalesOrderLine(
            item=item_code(line.sku),
            description=line.title[:DESCRIPTION_WIDTH],
            quantity=line.quantity,
            price=line.price,
            location=(line.location or default_location).upper()[:LOCATION_WIDTH],
            taxable=line.taxable,
        )
        for line in lines
    )


def order_problems(
    lines: Iterable[OrderLine], items: Mapping[str, bool], default_location: str
) -> list[str]:
    """What stops an order's lines from becoming a sales order: SKUs that are no
    active Sage Pro item (`items`: item code → active), in plain words."""
    problems = []
    for n, line in enumerate(lines, start=1):
        code = item_code(line.sku)
        if not code:
            problems.append(f"line {n} ({line.title or 'no title'}) has no SKU")
        elif code not in items:
            problems.append(f"line {n}: SKU {code} is not a Sage Pro item")
        elif not items[code]:
            problems.append(f"line {n}: Sage Pro item {code} is inactive")
    if not default_location:
        problems.append("the storefront connection has no default location")
    return problems


def total_problem(order_total: Decimal, paid: Decimal, currency: str = "USD") -> str:
    """Why a payment does not pay its order ("" when the amounts agree)."""
    if order_total == paid:
        return ""
    return (
        f"The order's total {order_total} {currency} differs from the payment "
        f"{paid} {currency}."
    )
