"""Request validation (contract sections 1-4): the one implementation the agent's core
and the sandbox (`integrations/sandbox/sagepro/ledger.py`) both use.

Nothing here reads or writes Sage tables: a request is valid or refused with
`400 VALIDATION_ERROR` naming every bad field before anything else happens.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sagepro_agent.core import keys
from sagepro_agent.core.errors import ValidationError
from sagepro_agent.core.money import ZERO, parse_money

MAX_KEY_LENGTH = 100
KEY_HEADER = "Idempotency-Key"
METHOD_WIDTH = 10
REFERENCE_WIDTH = 40


# Sage Pro's FoxPro tables store text in Windows-1252: anything else cannot be kept.
SAGE_CODE_PAGE = "cp1252"


def read_json(body: bytes) -> Any:
    """The request body as JSON; floats come back as Decimal so they can be refused."""
    try:
        return json.loads(body or b"null", parse_float=Decimal)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ValidationError({"body": ["is not valid JSON"]}) from exc


def parse_date(value: Any, name: str, errors: dict[str, list[str]]) -> datetime.date:
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError(value)
        return datetime.date.fromisoformat(value)
    except ValueError:
        errors.setdefault(name, []).append("must be a date as YYYY-MM-DD")
        return datetime.date.min


def parse_key(
    value: Any, name: str, pad: Callable[[str], str], errors: dict[str, list[str]]
) -> str:
    try:
        if not isinstance(value, str):
            raise keys.InvalidKeyError("must be a string")
        return pad(value)
    except keys.InvalidKeyError as exc:
        errors.setdefault(name, []).append(str(exc))
        return ""


def parse_text(value: Any, name: str, width: int, errors: dict[str, list[str]]) -> str:
    if not isinstance(value, str) or not value.strip():
        errors.setdefault(name, []).append("is required")
        return ""
    if len(value.strip()) > width:
        errors.setdefault(name, []).append(f"must be at most {width} characters")
    return value.strip()


def parse_stored_text(
    value: Any, name: str, width: int, errors: dict[str, list[str]]
) -> str:
    """Free text the receipt stores (`method`, `reference`): as `parse_text`, and every
    character must fit Sage Pro's code page. (A key that cannot is simply not found.)"""
    text = parse_text(value, name, width, errors)
    if not text.isascii():
        try:
            text.encode(SAGE_CODE_PAGE)
        except UnicodeEncodeError:
            errors.setdefault(name, []).append(
                "has characters Sage Pro cannot store (its tables hold Windows-1252 "
                "text only)"
            )
    return text


def check_idempotency_key(value: str | None) -> str:
    """The key, stripped; refused when empty or too long (reported under the header)."""
    key = (value or "").strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValidationError(
            {KEY_HEADER: [f"header is required, at most {MAX_KEY_LENGTH} chars"]}
        )
    return key


def page_size(
    value: str | None, default: int, maximum: int, errors: dict[str, list[str]]
) -> int:
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= maximum:
        errors["limit"] = [f"must be a whole number from 1 to {maximum}"]
        return default
    return int(value)


@dataclass(frozen=True)
class ReceiptRequest:
    """A validated `POST /cash-receipts` body, keys already padded the Sage way."""

    custno: str
    date: datetime.date
    amount: Decimal
    method: str
    reference: str
    applications: list[tuple[str, Decimal]] = field(default_factory=list)
    gl_account: str = ""

    @classmethod
    def parse(cls, body: Any) -> ReceiptRequest:
        if not isinstance(body, dict):
            raise ValidationError({"body": ["must be a JSON object"]})
        errors: dict[str, list[str]] = {}
        custno = parse_key(body.get("custno"), "custno", keys.pad_custno, errors)
        date = parse_date(body.get("date"), "date", errors)
        amount = parse_money(body.get("amount"), "amount", errors)
        if "amount" not in errors and amount <= ZERO:
            errors["amount"] = ["must be greater than 0.00"]
        method = parse_stored_text(
            body.get("method"), "method", METHOD_WIDTH, errors
        ).upper()
        reference = parse_stored_text(
            body.get("reference"), "reference", REFERENCE_WIDTH, errors
        )
        gl_account = ""
        if body.get("gl_account") not in (None, ""):
            gl_account = parse_text(
                body.get("gl_account"), "gl_account", keys.GLACNT_WIDTH, errors
            ).upper()
        raw_apps = body.get("applications", [])
        applications: list[tuple[str, Decimal]] = []
        if not isinstance(raw_apps, list):
            errors["applications"] = ["must be a list"]
            raw_apps = []
        seen: set[str] = set()
        for i, app in enumerate(raw_apps):
            prefix = f"applications.{i}"
            if not isinstance(app, dict):
                errors[prefix] = ["must be an object {invno, amount}"]
                continue
            invno = parse_key(
                app.get("invno"), f"{prefix}.invno", keys.pad_invno, errors
            )
            applied = parse_money(app.get("amount"), f"{prefix}.amount", errors)
            if f"{prefix}.amount" not in errors and applied <= ZERO:
                errors[f"{prefix}.amount"] = ["must be greater than 0.00"]
            if invno and invno in seen:
                errors[f"{prefix}.invno"] = ["invoice is listed more than once"]
            seen.add(invno)
            applications.append((invno, applied))
        if errors:
            raise ValidationError(errors)
        return cls(custno, date, amount, method, reference, applications, gl_account)

    def fingerprint(self) -> str:
        """Hash of the normalised request: same fingerprint = same document.

        Byte for byte the sandbox's hash, so a key means the same thing on both."""
        canonical = json.dumps(
            [
                self.custno.strip(),
                self.date.isoformat(),
                str(self.amount),
                self.method,
                self.reference,
                [[invno.strip(), str(amount)] for invno, amount in self.applications],
            ]
            # Without a GL account the hash is what it always was, so receipts posted
            # before the field existed still replay.
            + ([self.gl_account.replace("-", "")] if self.gl_account else []),
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()
