"""Why a payment waits for a person, in plain words.

A review item's `reason` is written for the record: the request that failed, the
gateway's code, every field our own validation refused. A reviewer first needs one
sentence that says what is wrong ("Sage Pro has no customer NOPE"); the record stays
one click away. `plain_reason(item)` returns both.

The sentence is chosen by the item's error code: the gateway's codes
(docs/sagepro-gateway.md §3), our own validation's (`VALIDATION:<field>`, a period or
account code, `OVERRIDE:<field>`), and the pipeline's failure names
(`integrations.models.failures.failure_code`). An item without a known code keeps the
first sentence of its reason, trimmed.
"""

import re
from typing import Protocol

from django.utils.text import Truncator

# Lists show one sentence of at most this many characters.
LIST_LENGTH = 140

NOT_SENT_PREFIX = "Not sent to Sage Pro: "
REFUSED_PREFIX = "Sage Pro refused the receipt"

FIELD_LABELS = {
    "custno": "customer",
    "invno": "invoice",
    "gl_account": "GL account",
    "date": "date",
    "amount": "amount",
    "method": "payment method",
    "reference": "reference",
}

# The sentence for each code; {customer}, {invoice}, {account}, {period} and {detail}
# are read out of the technical text (a value it does not name reads "it").
SENTENCES = {
    "CUSTOMER_NOT_FOUND": "Sage Pro has no customer {customer}.",
    "CUSTOMER_ON_HOLD": "Customer {customer} is on hold in Sage Pro.",
    "INVOICE_NOT_FOUND": "Sage Pro has no invoice {invoice} for this customer.",
    "INVOICE_NOT_OPEN": "Invoice {invoice} has no balance left to pay in Sage Pro.",
    "OVER_APPLICATION": "The receipt applies more to invoices than the payment's "
    "amount.",
    "PERIOD_NOT_DEFINED": "Sage Pro has no fiscal period for the receipt's date.",
    "PERIOD_LOCKED": "Sage Pro's period {period} is locked: post in an open period "
    "or have it unlocked.",
    "PERIOD_CLOSED": "Sage Pro's period {period} is closed: post in an open period.",
    "FUTURE_PERIOD": "The receipt's date is in a future Sage Pro period.",
    "ACCOUNT_NOT_FOUND": "Sage Pro has no GL account {account}.",
    "ACCOUNT_INACTIVE": "GL account {account} is inactive in Sage Pro.",
    "COMPANY_NOT_FOUND": "Sage Pro has no such company: check the connection's "
    "company id.",
    "DUPLICATE_RECEIPT": "Sage Pro already has a receipt for this PayTrace payment.",
    "IDEMPOTENCY_CONFLICT": "Sage Pro already received a different receipt under "
    "this payment's key.",
    "VALIDATION_ERROR": "Sage Pro did not accept a field of the receipt{detail}.",
    "UNAUTHORIZED": "Sage Pro refused the portal's API key: check the connection's "
    "credentials.",
    "RECORD_LOCKED": "A Sage Pro user held a record lock on every try.",
    "UNAVAILABLE": "Sage Pro could not be reached on every try.",
    "TIMEOUT": "Sage Pro did not answer in time on every try.",
    "BAD_RESPONSE": "Sage Pro answered with something the portal cannot read.",
    "database_unavailable": "The portal's database was unavailable on every try.",
    "timeout": "Sage Pro did not answer in time on every try.",
    "unavailable": "Sage Pro could not be reached on every try.",
    "invalid_record": "PayTrace's record of the payment cannot be read.",
    "invalid_amount": "The payment's amount is not one the portal can hold.",
    "internal_error": "The portal failed on this payment (a bug): tell the "
    "integration admin.",
}

# The sentence for a field our own validation refused (`VALIDATION:<field>`).
FIELD_SENTENCES = {
    "gl_account": "No GL account: no GL rule matched and the connection has no "
    "suspense account.",
}

_PATTERNS = {
    "customer": (
        r"/customers/([^\s/?:]+)",
        r"no customer '([^']*)'",
        r"customer '([^']*)'",
        r"field custno: ([^\s)]+)",
    ),
    "invoice": (
        r"/invoices/([^\s/?:]+)",
        r"invoice '([^']*)'",
        r"field invno: ([^\s)]+)",
    ),
    "account": (r"GL account '([^']*)'", r"field gl_account: ([^\s)]+)"),
    "period": (r"period (\d{6})",),
}
# One refused field of a problem summary: "gl_account: no GL rule matched (value ''".
_PROBLEM = re.compile(r"(?:^|; )(\w+): (.+?) \(value ")
_CODE_IN_TEXT = re.compile(r"\[([A-Z][A-Z_]+)\]")
_SENTENCE_END = re.compile(r"(?<=[A-Za-z0-9)'\"])\. (?=[A-Z])")


class HasReason(Protocol):
    reason: str
    error_code: str


def plain_reason(item: HasReason) -> tuple[str, str]:
    """The item's reason as one plain sentence, and the full technical text."""
    technical = (item.reason or "").strip()
    code = (item.error_code or "").strip() or _code_in(technical)
    plain = _sentence_for(code, technical) or first_sentence(technical)
    if technical.startswith(NOT_SENT_PREFIX) and not plain.startswith("Not sent"):
        plain = f"Not sent to Sage Pro: {_lower_first(plain)}"
    elif technical.startswith(REFUSED_PREFIX) and code in SENTENCES:
        plain = f"Sent and refused: {plain}"
    return plain, technical


def short_reason(item: HasReason, length: int = LIST_LENGTH) -> str:
    """The plain reason for a list cell: one sentence, at most `length` characters."""
    return Truncator(plain_reason(item)[0]).chars(length)


def first_sentence(text: str, length: int = LIST_LENGTH) -> str:
    """The first sentence of `text`, at most `length` characters."""
    text = " ".join(text.split())
    match = _SENTENCE_END.search(text)
    if match:
        text = text[: match.start() + 1]
    return Truncator(text).chars(length)


def _sentence_for(code: str, technical: str) -> str:
    if code.startswith(("VALIDATION:", "OVERRIDE:")) or (
        technical.startswith(NOT_SENT_PREFIX) and code not in SENTENCES
    ):
        return _not_sent_sentence(code, technical)
    template = SENTENCES.get(code)
    if template is None:
        return ""
    values = {name: _value(technical, name) for name in _PATTERNS}
    detail = _detail(technical) if code == "VALIDATION_ERROR" else ""
    return template.format(**values, detail=f" ({detail})" if detail else "")


def _not_sent_sentence(code: str, technical: str) -> str:
    """The first refused field of our own validation's summary, in plain words."""
    problems = _PROBLEM.findall(technical.removeprefix(NOT_SENT_PREFIX))
    field = code.partition(":")[2] or (problems[0][0] if problems else "")
    message = next((text for name, text in problems if name == field), "")
    if not message and problems:
        field, message = problems[0]
    more = len(problems) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})." if more > 0 else "."
    if field in FIELD_SENTENCES and message.startswith("no GL rule"):
        sentence = FIELD_SENTENCES[field].rstrip(".")
    elif message:
        sentence = f"the {FIELD_LABELS.get(field, field)} {message}"
    else:
        return ""
    if code.startswith("OVERRIDE:"):
        sentence = f"a reviewer's correction: {sentence}"
    text = f"Not sent to Sage Pro: {_lower_first(sentence)}"
    return Truncator(text).chars(LIST_LENGTH - len(tail)) + tail


def _value(technical: str, name: str) -> str:
    for pattern in _PATTERNS[name]:
        match = re.search(pattern, technical)
        if match and match.group(1).strip():
            return match.group(1).strip()
    return "it" if name != "period" else "of the receipt's date"


def _detail(technical: str) -> str:
    match = re.search(r"VALIDATION_ERROR[^:]*: (.+)$", technical)
    return first_sentence(match.group(1), 60) if match else ""


def _code_in(technical: str) -> str:
    match = _CODE_IN_TEXT.search(technical)
    return match.group(1) if match else ""


def _lower_first(text: str) -> str:
    """`The GL account…` → `the GL account…`; names (Sage Pro, PayTrace) keep theirs."""
    if text.startswith(("Sage", "PayTrace")):
        return text
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text
