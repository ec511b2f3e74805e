"""Sage Pro key formats (contract section 2): fixed-width, space-padded C columns.

Sage Pro compares keys byte for byte, so an unpadded `"10045"` never finds the stored
`"     10045"`. Every key that enters the core goes through one of these functions
before a lookup, and every key that leaves it is trimmed. The sandbox uses these same
functions (`integrations/sandbox/sagepro/keys.py` re-exports them).
"""

from __future__ import annotations

from sagepro_agent.layouts import (
    CUSTNO_WIDTH,
    GLACNT_WIDTH,
    INVNO_WIDTH,
    RECEIPT_NO_WIDTH,
)

COMPANY_WIDTH = 2
DEFAULT_MASK = "XXXX-XX"

__all__ = [
    "COMPANY_WIDTH",
    "CUSTNO_WIDTH",
    "GLACNT_WIDTH",
    "INVNO_WIDTH",
    "RECEIPT_NO_WIDTH",
    "InvalidKeyError",
    "format_glacnt",
    "normalize_company",
    "pad_custno",
    "pad_invno",
    "pad_receipt_no",
    "receipt_number",
]


class InvalidKeyError(ValueError):
    """A key does not fit its Sage Pro column."""


def pad_custno(value: str) -> str:
    """`CUSTNO` C(6): upper case, left-justified, padded with spaces on the right."""
    key = str(value).strip().upper()
    if not key or len(key) > CUSTNO_WIDTH:
        raise InvalidKeyError(f"customer number must be 1 to {CUSTNO_WIDTH} characters")
    return key.ljust(CUSTNO_WIDTH)


def pad_invno(value: str) -> str:
    """`INVNO` C(10): upper case, right-justified, padded with spaces on the left."""
    return _right_justify(value, INVNO_WIDTH, "invoice number")


def pad_receipt_no(value: str) -> str:
    """Receipt numbers are stored right-justified in C(10), like `INVNO`."""
    return _right_justify(value, RECEIPT_NO_WIDTH, "receipt number")


def receipt_number(number: int) -> str:
    """The counter's number as the receipt table stores it: `12` -> `"    000012"`."""
    return pad_receipt_no(f"{number:06d}")


def normalize_company(value: str | None) -> str:
    key = (value or "").strip().upper()
    if len(key) != COMPANY_WIDTH:
        raise InvalidKeyError(f"company id must be {COMPANY_WIDTH} characters")
    return key


def format_glacnt(value: str, mask: str = DEFAULT_MASK) -> str:
    """Write an account code the way `GLACNT` stores it (trimmed), using the mask.

    `"400000"`, `"4000-00"` and `" 4000-00 "` all become `"4000-00"`. A code that does
    not fit the mask is returned trimmed, so it simply finds nothing.
    """
    bare = str(value).strip().upper().replace("-", "")
    slots = mask.count("X")
    if len(bare) != slots:
        return str(value).strip().upper()
    out, pos = [], 0
    for char in mask:
        if char == "X":
            out.append(bare[pos])
            pos += 1
        else:
            out.append(char)
    return "".join(out)


def _right_justify(value: str, width: int, label: str) -> str:
    key = str(value).strip().upper()
    if not key or len(key) > width:
        raise InvalidKeyError(f"{label} must be 1 to {width} characters")
    return key.rjust(width)
