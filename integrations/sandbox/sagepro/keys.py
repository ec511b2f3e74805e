"""Sage Pro key formats: fixed-width, space-padded character columns.

Sage Pro compares keys byte for byte, so an unpadded `"10045"` never finds the stored
`"     10045"`. Every key that enters the sandbox goes through one of these functions
before a lookup, and every key that leaves it is trimmed.

The rules are the contract's (section 2), so the sandbox and the on-site agent share
one implementation: `sagepro_agent.core.keys` (pure Python, no Django).
"""

from sagepro_agent.core.keys import (
    COMPANY_WIDTH,
    CUSTNO_WIDTH,
    GLACNT_WIDTH,
    INVNO_WIDTH,
    RECEIPT_NO_WIDTH,
    InvalidKeyError,
    format_glacnt,
    normalize_company,
    pad_custno,
    pad_invno,
    pad_receipt_no,
)
from sagepro_agent.layouts import ORNUM_WIDTH, PONUM_WIDTH

__all__ = [
    "COMPANY_WIDTH",
    "CUSTNO_WIDTH",
    "GLACNT_WIDTH",
    "INVNO_WIDTH",
    "ORNUM_WIDTH",
    "PONUM_WIDTH",
    "RECEIPT_NO_WIDTH",
    "InvalidKeyError",
    "format_glacnt",
    "normalize_company",
    "pad_custno",
    "pad_invno",
    "pad_receipt_no",
]
