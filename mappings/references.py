"""Reading invoice numbers out of what customers write: pure functions over text.

A payment's reference is written by a person: `INV-10045`, `Invoice #10045`,
`inv 10045`, `0010045`, `10045, 10046`, `10045-10047`, `PO 7781`. `parse_reference`
turns it into tokens, each a lookup key with a note of how it was read; `reference_key`
is the same key computed from a Sage Pro number (`INVNO`, `ORNUM`, `PONUM`, which Sage
stores right-justified), so a token and a number match when their keys are equal.
`near_miss` says whether two keys differ by one edit or one transposition.

Every function takes any text (hostile input included) and returns within bounded
work: references are cut to `MAX_REFERENCE` characters, ranges to `MAX_RANGE` numbers
and tokens to `MAX_TOKENS`.
"""

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz.distance import OSA

# Words that introduce a number rather than being part of it; any of them may be
# followed by '.', ':', '#', '-' or spaces ("Inv. 10045", "No: 10045", "PO#7781").
DEFAULT_PREFIX_WORDS = (
    "INVOICES",
    "INVOICE",
    "INVS",
    "INV",
    "NUMBER",
    "NBR",
    "NUM",
    "NO",
    "REF",
    "ORDER",
    "SO",
    "PO",
    "ACCT",
)
MAX_REFERENCE = 200
MAX_RANGE = 20
MAX_TOKENS = 10
_RANGE_WORDS = r"(?:-|–|—|TO|THRU|THROUGH)"
_RANGE = re.compile(
    rf"(?<![A-Z0-9])([0-9]{{3,}})\s*{_RANGE_WORDS}\s*([0-9]{{3,}})(?![A-Z0-9])"
)
_TOKEN = re.compile(r"[A-Z0-9]+")
_SPLIT = re.compile(r"[^A-Z0-9]+")


@dataclass(frozen=True)
class Token:
    """One number read from a reference."""

    key: str  # what is compared with `reference_key` of a Sage Pro number
    text: str  # as it stood in the reference
    how: str  # how it was read, for the explanation


@dataclass(frozen=True)
class ParsedReference:
    raw: str
    tokens: tuple[Token, ...]
    # The whole reference is one number (with at most a prefix word and punctuation):
    # its invoice is paid as a bare invoice number is. A number picked out of longer
    # text only counts when the amount agrees.
    clean: bool

    @property
    def keys(self) -> list[str]:
        return [t.key for t in self.tokens]

    def describe(self) -> str:
        if not self.raw.strip():
            return "no reference"
        if not self.tokens:
            return f"{self.raw.strip()!r} holds no number"
        parts = ", ".join(
            t.key if t.how == "as written" else f"{t.key} ({t.how})"
            for t in self.tokens
        )
        return f"{self.raw.strip()!r} read as {parts}"


def _plain(text: str) -> str:
    """Upper-case ASCII-comparable text: NFKC (full-width digits become 0-9), no
    control characters, at most MAX_REFERENCE characters."""
    text = unicodedata.normalize("NFKC", str(text)[: MAX_REFERENCE * 2])
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text[:MAX_REFERENCE].upper()


def _prefix_pattern(prefixes: Iterable[str]) -> re.Pattern[str] | None:
    words = sorted(
        {_plain(p).strip(" .:#-") for p in prefixes if _plain(p).strip(" .:#-")},
        key=len,
        reverse=True,
    )
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in words)
    # A prefix word stands alone or is glued to a number ("INV10045"), never to
    # letters ("INVENTORY" is not "INV" + "ENTORY").
    return re.compile(rf"(?<![A-Z0-9])(?:{alternatives})(?![A-Z])[\s.:#\-]*")


def strip_prefix_words(
    text: str, prefixes: Iterable[str] = DEFAULT_PREFIX_WORDS
) -> tuple[str, tuple[str, ...]]:
    """`text` (upper-cased) without its prefix words; returns the words removed."""
    plain = _plain(text)
    pattern = _prefix_pattern(prefixes)
    if pattern is None:
        return plain, ()
    removed: list[str] = []

    def drop(match: re.Match[str]) -> str:
        removed.append(match.group(0).strip(" .:#-"))
        return " "

    # A leading '#' ("#10045") is punctuation, not a word: it is dropped with the rest.
    return pattern.sub(drop, plain), tuple(removed)


def reference_key(value: object, prefixes: Iterable[str] = DEFAULT_PREFIX_WORDS) -> str:
    """The comparable key of a number: prefix words, spaces and punctuation removed,
    upper case, leading zeros removed (Sage's right-justified `"   10045"` and a
    customer's `0010045` are both `10045`)."""
    stripped, _ = strip_prefix_words(str(value or ""), prefixes)
    key = _SPLIT.sub("", stripped)
    return _strip_zeros(key)


def _strip_zeros(key: str) -> str:
    return key.lstrip("0") or key[-1:] if key else ""


def parse_reference(
    text: str,
    prefixes: Iterable[str] = DEFAULT_PREFIX_WORDS,
    *,
    multiple: bool = True,
) -> ParsedReference:
    """The numbers a reference names (see the module docstring).

    A token is a run of letters and digits holding at least one digit. A range of
    numbers of the same width (`10045-10047`, `10045 to 10047`) names each number in
    it when it spans at most MAX_RANGE; a wider or reversed one is two numbers. With
    `multiple` False only a reference naming one number yields a token.
    """
    raw = str(text or "")
    stripped, removed = strip_prefix_words(raw, prefixes)
    tokens: list[Token] = []
    ranges: list[str] = []

    def add(key: str, written: str, how: str) -> None:
        if key and all(t.key != key for t in tokens) and len(tokens) < MAX_TOKENS:
            tokens.append(Token(key, written, how))

    def expand(match: re.Match[str]) -> str:
        first, last = match.group(1), match.group(2)
        start, end = int(first), int(last)
        if len(first) == len(last) and 0 < end - start <= MAX_RANGE:
            ranges.append(f"{first}-{last}")
            for n in range(start, end + 1):
                add(
                    _strip_zeros(str(n)), match.group(0), f"in the range {first}-{last}"
                )
            return " "
        return match.group(0)

    rest = _RANGE.sub(expand, stripped) if multiple else stripped
    for piece in _TOKEN.findall(rest):
        if any(ch.isdigit() for ch in piece):
            how = "as written"
            if removed:
                how = "after removing " + ", ".join(dict.fromkeys(removed))
            if piece != _strip_zeros(piece):
                how = (
                    "leading zeros removed"
                    if how == "as written"
                    else how + " and leading zeros"
                )
            add(_strip_zeros(piece), piece, how)
    clean = len(tokens) == 1 and not ranges and _is_one_number(stripped)
    if not multiple and len(tokens) > 1:
        tokens = []
    return ParsedReference(raw, tuple(tokens), clean)


def _is_one_number(stripped: str) -> bool:
    """Only one letters-and-digits run, with punctuation around it at most."""
    return len(_TOKEN.findall(stripped)) == 1


def near_miss(written: str, key: str) -> str:
    """How `written` differs from `key` by one edit: 'one pair of characters
    transposed', 'one character changed', 'one character missing' / 'extra'; '' when
    they are equal, further apart, or too short (under 4 characters) to say."""
    if written == key or min(len(written), len(key)) < 4:
        return ""
    if OSA.distance(written, key, score_cutoff=1) > 1:
        return ""
    if len(written) == len(key):
        diffs = [i for i, (a, b) in enumerate(zip(written, key, strict=True)) if a != b]
        if len(diffs) == 2 and diffs[1] == diffs[0] + 1:
            return "two adjacent characters transposed"
        return "one character different"
    return "one character missing" if len(written) < len(key) else "one character extra"
