"""The processor's dispute report: reading the CSV and checking each row.

Pure functions over plain values. PayTrace offers no chargeback API, so chargebacks
arrive as a CSV report whose columns differ by processor; the admin saves once which
column holds what (`ReportMapping`). `read_report` decodes and splits the file
(hostile input is expected: another encoding, a BOM, a huge file, formula text, card
numbers) and `check_rows` decides each row: a `ChargebackRow` to import, or the line
number and the errors that keep it out.

Nothing here stores anything: the caller passes `redact` (card numbers masked) and
applies it to every cell before a value leaves this module, and the payments the rows
name (`payments`: transaction id → amount).
"""

import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_BYTES = 2_000_000  # a month's dispute report is a few hundred rows
MAX_ROWS = 5_000
MAX_CELL = 500  # longer cells are cut: no column of a chargeback is longer
CENT = Decimal("0.01")


class State:
    OPENED = "opened"
    WON = "won"
    LOST = "lost"

    ALL = (OPENED, WON, LOST)


# The words processors use for a dispute's state, lower case.
STATE_WORDS: dict[str, str] = {
    "opened": State.OPENED,
    "open": State.OPENED,
    "new": State.OPENED,
    "pending": State.OPENED,
    "received": State.OPENED,
    "in progress": State.OPENED,
    "chargeback": State.OPENED,
    "won": State.WON,
    "win": State.WON,
    "reversed": State.WON,
    "merchant won": State.WON,
    "resolved in merchant favor": State.WON,
    "lost": State.LOST,
    "loss": State.LOST,
    "accepted": State.LOST,
    "merchant lost": State.LOST,
    "resolved in cardholder favor": State.LOST,
}

# The report's fields: name → (label, required).
FIELDS: dict[str, tuple[str, bool]] = {
    "case_number": ("Case number", True),
    "transaction_id": ("PayTrace transaction id", True),
    "amount": ("Amount", True),
    "state": ("State", True),
    "opened_on": ("Opened date", True),
    "due_on": ("Respond-by date", False),
    "resolved_on": ("Resolved date", False),
    "reason_code": ("Reason code", False),
    "reason_text": ("Reason", False),
    "fee": ("Dispute fee", False),
}

DATE_FORMATS = {
    "%Y-%m-%d": "YYYY-MM-DD",
    "%m/%d/%Y": "MM/DD/YYYY",
    "%d/%m/%Y": "DD/MM/YYYY",
    "%m/%d/%y": "MM/DD/YY",
    "%d.%m.%Y": "DD.MM.YYYY",
}


class ReportError(ValueError):
    """The file cannot be read as a dispute report at all; the message says why."""


@dataclass(frozen=True)
class ReportMapping:
    """Which column (by its header) holds each field, and how dates are written."""

    columns: Mapping[str, str]
    date_format: str = "%Y-%m-%d"

    def problems(self) -> list[str]:
        out = [
            f"Choose the column that holds the {label.lower()}."
            for name, (label, required) in FIELDS.items()
            if required and not str(self.columns.get(name) or "").strip()
        ]
        if self.date_format not in DATE_FORMATS:
            out.append(f"Unknown date format {self.date_format!r}.")
        return out


@dataclass(frozen=True)
class Report:
    """The decoded file: its header, its rows (line number, cells by header), and a
    note about how it was read."""

    headers: tuple[str, ...]
    rows: tuple[tuple[int, dict[str, str]], ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChargebackRow:
    """One good row: a chargeback case in one state."""

    line: int
    case_number: str
    transaction_id: str
    amount: Decimal
    state: str
    opened_on: date
    due_on: date | None = None
    resolved_on: date | None = None
    reason_code: str = ""
    reason_text: str = ""
    fee: Decimal = Decimal("0.00")

    @property
    def event_on(self) -> date:
        """The date of the state the row reports."""
        if self.state == State.OPENED or self.resolved_on is None:
            return self.opened_on
        return self.resolved_on


@dataclass(frozen=True)
class RowResult:
    """A row's verdict: `row` when good, else `errors` (and the case number if any)."""

    line: int
    case_number: str = ""
    row: ChargebackRow | None = None
    errors: tuple[str, ...] = ()

    @property
    def is_good(self) -> bool:
        return self.row is not None and not self.errors


@dataclass
class _Checked:
    errors: list[str] = field(default_factory=list)


def decode(content: bytes) -> tuple[str, tuple[str, ...]]:
    """The file's text and a note on how it was read. UTF-8 (with or without a BOM),
    UTF-16 with a BOM, else Windows-1252 (what spreadsheet programs save); a binary
    file or one over MAX_BYTES is refused."""
    if len(content) > MAX_BYTES:
        raise ReportError(
            f"The file is {len(content):,} bytes; a dispute report may be at most "
            f"{MAX_BYTES:,} bytes. Split it by month and import each part."
        )
    if content.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return content.decode("utf-16"), ("Read as UTF-16.",)
        except UnicodeDecodeError as exc:
            raise ReportError("The file says it is UTF-16 but is not.") from exc
    if b"\x00" in content:
        raise ReportError(
            "The file is not a CSV text file (it holds binary data). Export the "
            "dispute report as CSV."
        )
    try:
        return content.decode("utf-8-sig"), ()
    except UnicodeDecodeError:
        pass
    try:
        text = content.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise ReportError(
            "The file is neither UTF-8 nor Windows-1252 text. Export the dispute "
            "report as CSV (UTF-8)."
        ) from exc
    return text, ("Not UTF-8: read as Windows-1252.",)


def read_report(content: bytes, redact: Callable[[str], str]) -> Report:
    """Decode and split the file; every header and cell goes through `redact`."""
    text, notes = decode(content)
    if not text.strip():
        raise ReportError("The file is empty.")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header_cells = next(reader)
    except (csv.Error, StopIteration) as exc:
        raise ReportError(f"The header line cannot be read: {exc}") from exc
    headers = tuple(_cell(h, redact) for h in header_cells)
    if not any(headers):
        raise ReportError("The first line (the column headers) is empty.")
    rows: list[tuple[int, dict[str, str]]] = []
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ReportError(
                f"Line {reader.line_num} cannot be read as CSV: {exc}"
            ) from exc
        if not any(c.strip() for c in cells):
            continue
        if len(rows) >= MAX_ROWS:
            raise ReportError(
                f"The file has more than {MAX_ROWS:,} rows; split it and import "
                "each part."
            )
        values = {
            header: _cell(cells[i], redact)
            for i, header in enumerate(headers)
            if i < len(cells) and header
        }
        rows.append((reader.line_num, values))
    return Report(headers, tuple(rows), notes)


def _cell(value: str, redact: Callable[[str], str]) -> str:
    # Formula text (`=HYPERLINK(…)`) stays text: nothing here evaluates it, and the
    # pages escape it.
    return redact(value.strip())[:MAX_CELL]


def missing_columns(report: Report, mapping: ReportMapping) -> list[str]:
    """The mapped columns the file's header does not have."""
    present = set(report.headers)
    return [
        f"column {header!r} ({FIELDS[name][0].lower()}) is not in the file"
        for name, header in mapping.columns.items()
        if name in FIELDS and header and header not in present
    ]


def check_rows(
    report: Report, mapping: ReportMapping, payments: Mapping[str, Decimal]
) -> list[RowResult]:
    """Each row's verdict, in file order. `payments` maps the transaction ids the
    file may name to their amounts."""
    seen: dict[str, int] = {}
    results = []
    for line, values in report.rows:
        result = check_row(line, values, mapping, payments)
        case = result.case_number
        if case and case in seen:
            result = RowResult(
                line,
                case,
                None,
                (
                    *result.errors,
                    f"case {case} is already on line {seen[case]} of this file",
                ),
            )
        elif case:
            seen[case] = line
        results.append(result)
    return results


def check_row(
    line: int,
    values: Mapping[str, str],
    mapping: ReportMapping,
    payments: Mapping[str, Decimal],
) -> RowResult:
    """One row's verdict."""
    checked = _Checked()

    def get(name: str) -> str:
        header = str(mapping.columns.get(name) or "")
        if not header:
            return ""
        if header not in values:
            if FIELDS[name][1]:
                checked.errors.append(f"missing column {header!r}")
            return ""
        return values[header]

    case = get("case_number")
    if not case:
        checked.errors.append("no case number")
    transaction_id = get("transaction_id")
    payment = payments.get(transaction_id) if transaction_id else None
    if not transaction_id:
        checked.errors.append("no transaction id")
    elif payment is None:
        checked.errors.append(f"unknown transaction id {transaction_id}")
    amount = _money(get("amount"), "amount", checked, required=True)
    if amount is not None and payment is not None and amount > payment:
        checked.errors.append(
            f"amount {amount} is more than the payment's {payment:.2f}"
        )
    fee = _money(get("fee"), "fee", checked, required=False)
    state_text = get("state")
    state = STATE_WORDS.get(" ".join(state_text.lower().split()))
    if state is None:
        checked.errors.append(
            f"unknown state {state_text!r} (expected opened, won or lost)"
            if state_text
            else "no state"
        )
    opened_on = _date(get("opened_on"), "opened date", mapping, checked, True)
    due_on = _date(get("due_on"), "respond-by date", mapping, checked, False)
    resolved_on = _date(get("resolved_on"), "resolved date", mapping, checked, False)
    if state in (State.WON, State.LOST) and not get("resolved_on"):
        checked.errors.append(f"a {state} case needs its resolved date")
    if opened_on and resolved_on and resolved_on < opened_on:
        checked.errors.append(
            f"resolved {resolved_on.isoformat()} before it opened "
            f"{opened_on.isoformat()}"
        )
    if checked.errors or amount is None or state is None or opened_on is None:
        return RowResult(line, case, None, tuple(checked.errors))
    return RowResult(
        line,
        case,
        ChargebackRow(
            line=line,
            case_number=case[:40],
            transaction_id=transaction_id,
            amount=amount,
            state=state,
            opened_on=opened_on,
            due_on=due_on,
            resolved_on=resolved_on if state != State.OPENED else None,
            reason_code=get("reason_code")[:20],
            reason_text=get("reason_text")[:200],
            fee=fee or Decimal("0.00"),
        ),
    )


def parse_money(text: str) -> Decimal | None:
    """`$1,234.50`, `(25.00)` or `-25.00` → the positive amount, or None."""
    cleaned = text.strip().replace("$", "").replace(",", "").replace(" ", "")
    if cleaned.startswith("(") and cleaned.endswith(")"):
        cleaned = cleaned[1:-1]
    cleaned = cleaned.lstrip("-+")
    if not cleaned or not all(c.isdigit() or c == "." for c in cleaned):
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite() or value != value.quantize(CENT):
        return None
    return value.quantize(CENT)


def _money(
    text: str, name: str, checked: _Checked, *, required: bool
) -> Decimal | None:
    if not text:
        if required:
            checked.errors.append(f"no {name}")
        return None
    value = parse_money(text)
    if value is None:
        checked.errors.append(f"{name} {text[:40]!r} is not a number")
        return None
    if value > Decimal("999999999999.99"):
        checked.errors.append(f"{name} is too large")
        return None
    if required and value <= 0:
        checked.errors.append(f"{name} must be more than 0.00")
        return None
    return value


def parse_date(text: str, date_format: str) -> date | None:
    """A date in the mapping's format (or ISO), or None."""
    for fmt in (date_format, "%Y-%m-%d"):
        try:
            # A date, not a time: no zone is involved.
            return datetime.strptime(text.strip(), fmt).date()  # noqa: DTZ007
        except ValueError:
            continue
    return None


def _date(
    text: str,
    name: str,
    mapping: ReportMapping,
    checked: _Checked,
    required: bool,
) -> date | None:
    if not text:
        if required:
            checked.errors.append(f"no {name}")
        return None
    value = parse_date(text, mapping.date_format)
    if value is None:
        expected = DATE_FORMATS.get(mapping.date_format, mapping.date_format)
        checked.errors.append(f"bad {name} {text[:40]!r} (expected {expected})")
    return value


def guess_mapping(headers: Sequence[str]) -> dict[str, str]:
    """A first mapping from the header's words, for the admin to correct."""
    hints = {
        "case_number": ("case", "dispute id", "chargeback id", "case number"),
        "transaction_id": ("transaction", "trans id", "txn"),
        "amount": ("amount", "dispute amount", "chargeback amount"),
        "state": ("status", "state", "outcome"),
        "opened_on": ("opened", "received", "dispute date", "open date"),
        "due_on": ("due", "respond", "reply by"),
        "resolved_on": ("resolved", "closed", "decision date"),
        "reason_code": ("reason code", "code"),
        "reason_text": ("reason", "description"),
        "fee": ("fee",),
    }
    out: dict[str, str] = {}
    used: set[str] = set()
    for name, words in hints.items():
        for header in headers:
            low = header.lower()
            if header not in used and any(w in low for w in words):
                out[name] = header
                used.add(header)
                break
    return out


def as_jsonable(results: Iterable[RowResult]) -> list[dict[str, Any]]:
    """The verdicts as plain JSON values (for an import's record)."""
    out = []
    for r in results:
        entry: dict[str, Any] = {
            "line": r.line,
            "case_number": r.case_number,
            "errors": list(r.errors),
        }
        if r.row is not None:
            entry.update(
                transaction_id=r.row.transaction_id,
                amount=f"{r.row.amount:.2f}",
                state=r.row.state,
                event_on=r.row.event_on.isoformat(),
            )
        out.append(entry)
    return out


def guess_date_format(report: Report, columns: Mapping[str, str]) -> str:
    """The first known date format that reads every date cell of the report."""
    cells = [
        values[header]
        for name in ("opened_on", "due_on", "resolved_on")
        if (header := str(columns.get(name) or ""))
        for _, values in report.rows
        if values.get(header)
    ]
    best, best_count = "%Y-%m-%d", -1
    for fmt in DATE_FORMATS:
        count = sum(1 for cell in cells if parse_date(cell, fmt) is not None)
        if count > best_count:
            best, best_count = fmt, count
    return best
