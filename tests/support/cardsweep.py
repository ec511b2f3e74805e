"""Look for planted card numbers in every column of every table (and in files).

A value counts as holding a card number when the card's digits appear in it after
JSON `\\uXXXX` escapes are decoded, every Unicode digit is read as its ASCII digit and
everything else in the value is dropped: `4111.1111.1111.1111`, `４１１１…`,
`[4111, 1111, 1111, 1111]` and `"\\u0034\\u0031…"` are all found. django-q2's pickled
task arguments and results and its signed queue payloads are unpickled first.
"""

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from django.db import connection

_ESCAPE_RE = re.compile(r"\\u([0-9A-Fa-f]{4})")


@dataclass(frozen=True)
class Finding:
    where: str  # "table.column" or a file path
    card: str
    value: str

    def __str__(self) -> str:
        return f"{self.where}: {self.card} in {self.value[:200]!r}"


def digits_of(text: str) -> str:
    """Every digit in `text` as ASCII, in order, with everything else dropped."""
    text = _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), text)
    out = []
    for char in text:
        value = unicodedata.digit(char, None)
        if value is not None:
            out.append(str(value))
    return "".join(out)


def _readable(table: str, column: str, value: object) -> list[str]:
    """The value as text, plus what it decodes to if it is a pickled task value."""
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        texts = [value.decode("utf-8", errors="replace")]
    else:
        texts = [str(value)]
    if table.startswith("django_q_") and isinstance(value, str):
        texts.extend(_unpickled(value))
    return texts


def _unpickled(value: str) -> list[str]:
    from django_q.signing import SignedPackage
    from picklefield.fields import dbsafe_decode

    out = []
    for decode in (dbsafe_decode, SignedPackage.loads):
        try:
            out.append(repr(decode(value)))
        except Exception:  # noqa: BLE001 - not that kind of value
            continue
    return out


def sweep_database(cards: Iterable[str]) -> list[Finding]:
    """Every (table.column, card) where a value holds one of `cards`."""
    cards = list(cards)
    wanted = [digits_of(card) for card in cards]
    findings = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT * FROM {quoted}")  # noqa: S608 - our own table names
            columns = [c[0] for c in cursor.description]
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    if value is None or isinstance(value, bool):
                        continue
                    for text in _readable(table, column, value):
                        digits = digits_of(text)
                        for card, card_digits in zip(cards, wanted, strict=True):
                            if card_digits in digits:
                                findings.append(
                                    Finding(f"{table}.{column}", card, text)
                                )
    return findings


def sweep_files(paths: Iterable[Path], cards: Iterable[str]) -> list[Finding]:
    """Every (file, card) where the file's text holds one of `cards` (a database file
    and its WAL, a log file), read as UTF-8 with its non-digits dropped per line."""
    cards = list(cards)
    wanted = [digits_of(card) for card in cards]
    findings = []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
            digits = digits_of(line)
            for card, card_digits in zip(cards, wanted, strict=True):
                if card_digits in digits:
                    findings.append(Finding(str(path), card, line))
    return findings
