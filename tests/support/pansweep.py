"""Plant card numbers, then look for them everywhere they must not be.

An oracle independent of the product's masking: the fuzzer knows which card numbers it
planted, so it searches for their digits in every stored value after undoing the
disguises an attacker (or a careless sender) uses:

* Unicode digits (full-width, Arabic-Indic, superscripts) are read as ASCII digits,
* JSON `\\uXXXX` escapes are decoded,
* every non-digit inside the value is dropped (separators, quotes, array brackets,
  decimal points and exponents all disappear; a PAN split into digit groups, written
  as `5105105105105100.0` or as `5.1051051051051e15` is still its digits).

The raw bytes of the SQLite database file and its WAL are searched for the ASCII digit
string. Planted numbers are fresh random Luhn-valid 15/16-digit numbers, so their full
digits cannot appear by chance in an unrelated value.
"""

import json
import logging
import random
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_plus

# Always 16 digits: a planted number's length must not vary, or the fuzzers' later
# draws (which walk the body, arrays of digit groups included) would depend on
# randomness outside hypothesis and it would refuse the run as flaky. 15-digit Amex
# numbers are covered by the card-data tests with fixed numbers.
_PREFIXES = ("4", "51", "52", "53", "54", "55", "2221", "6011")
_rng = random.SystemRandom()


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def is_luhn_valid(number: str) -> bool:
    return number[-1] == luhn_digit(number[:-1])


def new_pan() -> str:
    """A fresh Luhn-valid card number with random digits (never shrunk, never reused).

    Random rather than drawn by hypothesis: a shrunk `4000000000000002` could
    plausibly occur elsewhere; 12+ random digits cannot.
    """
    prefix = _rng.choice(_PREFIXES)
    length = 16
    while True:
        body = prefix + "".join(
            _rng.choice("0123456789") for _ in range(length - 1 - len(prefix))
        )
        # Avoid a run the product could plausibly print itself (all one digit).
        if len(set(body[len(prefix) :])) > 3:
            return body + luhn_digit(body)


_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _decode_json_escapes(text: str) -> str:
    return _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def digits_of(text: str) -> str:
    """The value's digits in order, any script, with JSON escapes decoded."""
    text = _decode_json_escapes(text)
    out = []
    for ch in text:
        if "0" <= ch <= "9":
            out.append(ch)
        elif not ch.isascii():
            value = unicodedata.digit(ch, None)
            if value is not None:
                out.append(str(value))
    return "".join(out)


def as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


@dataclass(frozen=True)
class Finding:
    """A planted card number found somewhere it must not be."""

    pan: str
    where: str  # "table.column", "log", "queued task", "db file", ...
    sample: str  # a short excerpt around it, card digits masked for the report

    def describe(self, planted_by: str = "") -> str:
        origin = f" (planted by {planted_by})" if planted_by else ""
        return f"{mask(self.pan)} in {self.where}{origin}: {self.sample!r}"


def mask(pan: str) -> str:
    return f"{pan[:2]}{'*' * (len(pan) - 6)}{pan[-4:]}"


def _excerpt(text: str, pan: str) -> str:
    """A short, masked excerpt of where the digits sit (for the report only)."""
    plain = _decode_json_escapes(text)
    index = plain.find(pan[:4])
    start = max(0, index - 20) if index >= 0 else 0
    snippet = plain[start : start + 80]
    return re.sub(
        r"\d{6,}",
        lambda m: mask(m.group()) if len(m.group()) > 6 else m.group(),
        snippet,
    )


def find_in_text(text: str, pans: Iterable[str], where: str) -> list[Finding]:
    if not text:
        return []
    digits = digits_of(text)
    if "%" in text or "+" in text:  # a form body stored URL-encoded
        digits += "|" + digits_of(unquote_plus(text))
    return [Finding(p, where, _excerpt(text, p)) for p in _present(digits, pans)]


def find_in_bytes(data: bytes, pans: Iterable[str], where: str) -> list[Finding]:
    runs = "|".join(m.decode() for m in re.findall(rb"[0-9]{13,}", data))
    return [Finding(p, where, "(raw bytes)") for p in _present(runs, pans)]


def _present(digits: str, pans: Iterable[str]) -> list[str]:
    """The planted numbers that occur in `digits`, in time linear in its length.

    Every window of each planted length is looked up in a set, rather than each of
    thousands of numbers being searched for in every one of thousands of values.
    """
    pans = pans if isinstance(pans, (set, frozenset)) else set(pans)
    found: list[str] = []
    for length in {len(p) for p in pans}:
        windows = {digits[i : i + length] for i in range(len(digits) - length + 1)}
        found += sorted(windows & pans)
    return found


def sweep_database(pans: Iterable[str], using: str = "default") -> list[Finding]:
    """Read every column of every table with raw SQL and search each value."""
    from django.db import connections

    pans = set(pans)
    if not pans:
        return []
    connection = connections[using]
    findings: list[Finding] = []
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        for table in tables:
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT * FROM {quoted}")  # noqa: S608 - names from introspection
            columns = [c[0] for c in cursor.description]
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    findings += find_in_text(as_text(value), pans, f"{table}.{column}")
    findings += sweep_task_payloads(pans)
    return _unique(findings)


def sweep_task_payloads(pans: Iterable[str]) -> list[Finding]:
    """Decode what django-q2 keeps pickled (queued packages, task results) and search it."""
    from django_q.models import OrmQ, Schedule, Task
    from django_q.signing import SignedPackage

    pans = set(pans)
    findings: list[Finding] = []
    for row in OrmQ.objects.all():
        try:
            task = SignedPackage.loads(row.payload)
        except Exception as exc:  # a payload we cannot read is reported, not skipped
            task = f"<unreadable payload: {type(exc).__name__}>"
        findings += find_in_text(repr(task), pans, "django_q_ormq.payload (decoded)")
    for task in Task.objects.all():
        text = repr((task.func, task.args, task.kwargs, task.result, task.name))
        findings += find_in_text(text, pans, "django_q_task.result/args (decoded)")
    for schedule in Schedule.objects.all():
        text = repr((schedule.args, schedule.kwargs, schedule.name))
        findings += find_in_text(text, pans, "django_q_schedule (decoded)")
    return findings


def sweep_sqlite_files(pans: Iterable[str], using: str = "default") -> list[Finding]:
    """The database file and its -wal/-journal files, as bytes (SQLite only)."""
    from django.db import connections

    connection = connections[using]
    if connection.vendor != "sqlite":
        return []
    name = str(connection.settings_dict["NAME"])
    if name == ":memory:" or "mode=memory" in name:
        return []
    pans = set(pans)
    findings: list[Finding] = []
    for suffix in ("", "-wal", "-journal", "-shm"):
        path = Path(name + suffix)
        if path.exists():
            findings += find_in_bytes(
                path.read_bytes(), pans, f"sqlite file {path.name}"
            )
    return findings


class LogCapture(logging.Handler):
    """Every log record, formatted with its traceback, kept in memory."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception as exc:  # a record that cannot be formatted is still evidence
            self.lines.append(f"<unformattable record {record.name}: {exc!r}>")

    def __enter__(self) -> "LogCapture":
        root = logging.getLogger()
        self._previous_level = root.level
        root.addHandler(self)
        root.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._previous_level)

    def sweep(self, pans: Iterable[str]) -> list[Finding]:
        pans = set(pans)
        out: list[Finding] = []
        for line in self.lines:
            out += find_in_text(line, pans, "log")
        return _unique(out)


def _unique(findings: Iterable[Finding]) -> list[Finding]:
    seen: dict[tuple[str, str], Finding] = {}
    for f in findings:
        seen.setdefault((f.pan, f.where), f)
    return list(seen.values())


def group_by_place(findings: Iterable[Finding]) -> Iterator[tuple[str, int]]:
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.where] = counts.get(f.where, 0) + 1
    yield from sorted(counts.items(), key=lambda kv: -kv[1])
