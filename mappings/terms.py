"""When an invoice falls due, from its date and the customer's Sage Pro terms text.

Pure: plain values in, a `DueDate` out. Sage Pro keeps terms as free text on the
customer (`ARCUST.pterms`), so the common spellings are read here:

- "Due on receipt", "Receipt", "COD", "CIA", "Cash", "Immediate", "Prepaid",
  "Net 0" → due on the invoice date;
- "Net 30", "N30", "Net30", "30 days", "30" → 30 days after the invoice date;
- "2% 10 Net 30", "2/10 Net 30", "2/10 N 30", "1% 15, Net 45" → the net days (the
  discount is not autopay's business: the full balance is charged when due);
- "Net EOM", "EOM" → the last day of the invoice's month; "Net 30 EOM", "EOM 30"
  → 30 days after that;
- "10th Prox", "Net 10th" → that day of the next month.

Anything else (empty, "See contract") is not understood: the due date is the invoice
date plus `default_net_days`, and `understood` is False so the report can say so.
"""

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

# At most this many net days are believed; "Net 3000" is a typo, not a due date.
MAX_NET_DAYS = 365

_IMMEDIATE = re.compile(
    r"^(due\s*(up)?on\s*receipt|upon\s*receipt|on\s*receipt|receipt|due\s*now|"
    r"c\.?o\.?d\.?|cash\s*on\s*delivery|c\.?i\.?a\.?|cash(\s*in\s*advance)?|"
    r"immediate(ly)?|prepaid|pre-?pay(ment)?|due\s*immediately|net\s*0)$"
)
_PROX = re.compile(
    r"^(net\s*)?(\d{1,2})(st|nd|rd|th)(\s*(prox(imo)?|of\s*next\s*month))?$"
)
_EOM = re.compile(r"\be\.?o\.?m\.?\b|end\s*of\s*(the\s*)?month")
# "net 30", "n30", "n/30", "net30"; the last one wins ("2% 10 net 30" → 30).
_NET = re.compile(r"\b(?:net|n)\s*/?\s*(\d{1,4})\b")
# "2/10 30" without the word: discount%/days then the net days.
_DISCOUNT_THEN_NET = re.compile(r"^\d+(?:\.\d+)?\s*%?\s*/?\s*\d{1,3}\s*,?\s+(\d{1,4})$")
_DAYS = re.compile(r"^(\d{1,4})(\s*days?)?$")


@dataclass(frozen=True)
class DueDate:
    on: date
    understood: bool  # False: the terms were not read, the default net days were used
    rule: str  # how the date was found, in words, for the report


def due_date(invoice_date: date, terms: str, default_net_days: int) -> DueDate:
    """The day an invoice dated `invoice_date` falls due under `terms`."""
    text = " ".join(str(terms or "").lower().split())
    text = text.strip(" .;:-")
    if text:
        found = _read(invoice_date, text)
        if found is not None:
            return found
    default = max(0, min(int(default_net_days), MAX_NET_DAYS))
    said = f"terms {terms.strip()!r} not understood" if text else "no terms"
    return DueDate(
        invoice_date + timedelta(days=default),
        False,
        f"{said}: the default of {default} net days",
    )


def _read(invoice_date: date, text: str) -> DueDate | None:
    if _IMMEDIATE.match(text):
        return DueDate(invoice_date, True, "due on receipt")
    prox = _PROX.match(text)
    if prox and (prox.group(4) or prox.group(1)):
        day = int(prox.group(2))
        if 1 <= day <= 31:
            year, month = _next_month(invoice_date)
            last = calendar.monthrange(year, month)[1]
            return DueDate(
                date(year, month, min(day, last)), True, f"day {day} of the next month"
            )
        return None
    eom = bool(_EOM.search(text))
    nets = _NET.findall(text)
    if nets:
        days = int(nets[-1])
    elif match := (
        _DISCOUNT_THEN_NET.match(text) or _DAYS.match(_EOM.sub("", text).strip())
    ):
        days = int(match.group(1))
    elif eom and not re.search(r"\d", text):
        days = 0
    else:
        return None
    if days > MAX_NET_DAYS:
        return None
    if eom:
        month_end = invoice_date.replace(
            day=calendar.monthrange(invoice_date.year, invoice_date.month)[1]
        )
        rule = "end of the month" + (f" plus {days} days" if days else "")
        return DueDate(month_end + timedelta(days=days), True, rule)
    if days == 0:
        return DueDate(invoice_date, True, "due on receipt")
    return DueDate(invoice_date + timedelta(days=days), True, f"net {days} days")


def _next_month(day: date) -> tuple[int, int]:
    return (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
