"""Find card numbers in text, in whatever shape hostile input gives them.

One detector finds a card number as a 13–19 digit run that passes the Luhn check and
starts with a real card brand's IIN prefix, whose digits may be any Unicode digits
(full-width, Arabic-Indic, superscripts) or JSON `\\uXXXX` escapes, split by short runs
of separators (spaces, tabs, newlines, `-./_,:`, quotes and brackets, JSON escapes such
as `\\n`), or written as a JSON number (`5105105105105100.0`, `4.222222222222e12`).
Masking keeps the last four digits. `integrations.redaction` applies it to parsed
data, headers and logs.

Everything here runs in linear time: bodies are up to 256 KiB of hostile text, so no
pattern may backtrack over it.
"""

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Sequence
from decimal import Decimal

# Every character with a digit value: ASCII, the other scripts' decimal digits, and the
# superscript, subscript and circled digits (`unicodedata.digit`). None lies above
# U+1FFFF (a test checks it).
_DIGIT_VALUES: dict[str, int] = {
    chr(c): unicodedata.digit(chr(c))
    for c in range(0x20000)
    if unicodedata.digit(chr(c), None) is not None
}
# Characters that may separate the digit groups of one card number. Whitespace counts
# once per run however long the run is (pretty-printed JSON), the rest one each.
_ZERO_WIDTH = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
_SEPARATORS = "\ufffd-./_,:\\\"'[]()\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uff0c\uff0d\uff0e\uff0f\uff1a\u30fb"
_JSON_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "/": "/",
    "\\": "\\",
    '"': '"',
}
_MAX_GAP_COST = 4  # `", "` between string digit groups costs 4 (three marks + space)
_MAX_GAP_ATOMS = 40


def _char_class(chars: str) -> str:
    """A regex character class for `chars`, written as ranges."""
    codes = sorted({ord(c) for c in chars})
    parts, start, prev = [], codes[0], codes[0]
    for code in [*codes[1:], None]:
        if code is not None and code == prev + 1:
            prev = code
            continue
        first, last = re.escape(chr(start)), re.escape(chr(prev))
        parts.append(first if start == prev else f"{first}-{last}")
        if code is not None:
            start = prev = code
    return "".join(parts)


_DIGIT_CLASS = _char_class("".join(_DIGIT_VALUES))
_SEP_CLASS = _char_class(_SEPARATORS + _ZERO_WIDTH) + r"\s"
_ASCII_SEP_CLASS = _char_class(
    "".join(c for c in _SEPARATORS if c.isascii()) + " \t\n\r\f\v"
)
# A `\uXXXX` escape may itself be escaped (`\\u0034` in a JSON string that holds
# JSON text): up to eight backslashes, a bound that keeps matching linear.
_ESCAPE = r"\\{1,8}u[0-9A-Fa-f]{4}|\\[nrtbf/\\\"]"


def _stretch_re(digits: str, separators: str) -> re.Pattern:
    """A stretch of digits, separators and JSON escapes that starts with a digit. The
    alternatives cannot match the same text in two ways, so matching never
    backtracks."""
    return re.compile(
        rf"(?:\\{{1,8}}u[0-9A-Fa-f]{{4}}|[{digits}])(?:{_ESCAPE}|[{digits}{separators}])*"
    )


_STRETCH_RE = _stretch_re(_DIGIT_CLASS, _SEP_CLASS)
# The same over ASCII text, where a small character class makes the search faster.
_ASCII_STRETCH_RE = _stretch_re("0-9", _ASCII_SEP_CLASS)
_ATOM_RE = re.compile(r"\\{1,8}u([0-9A-Fa-f]{4})|\\([nrtbf/\\\"])|(.)", re.DOTALL)
# The exponent of a JSON number whose digits alone do not show the card number
# (`5.1051051051051e15`), matched where a stretch of digits ends.
_EXPONENT_RE = re.compile(r"[eE][+-]?[0-9]{1,3}(?![0-9A-Za-z.])")
_SHORT_EXPONENT_RE = re.compile(r"[0-9][eE][+-]?[0-9]")
# Our own hashes and ids (uuid4().hex, SHA-1, SHA-256, dashed UUIDs): a digit run
# inside one is chance, not a card number.
_HASH_RE = re.compile(
    r"(?<![0-9A-Za-z])(?:[0-9a-f]{64}|[0-9a-f]{40}|[0-9a-f]{32}|[0-9A-F]{64}|[0-9A-F]{40}"
    r"|[0-9A-F]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    r"(?![0-9A-Za-z])"
)

_LUHN_DOUBLE = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
_ANY_LENGTH = (13, 14, 15, 16, 17, 18, 19)
_LONG = (16, 17, 18, 19)
_DINERS = (14, 15, 16, 17, 18, 19)


def _brand_lengths(d: list[int], s: int) -> tuple[int, ...]:
    """The lengths a card number starting at `d[s]` can have, by its IIN prefix."""
    first = d[s]
    if first == 4:  # Visa
        return _ANY_LENGTH
    if first not in (2, 3, 5, 6):
        return ()
    p2 = first * 10 + d[s + 1]
    p3 = p2 * 10 + d[s + 2]
    p4 = p3 * 10 + d[s + 3]
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:  # Mastercard
        return (16,)
    if p2 in (34, 37):  # American Express
        return (15,)
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or p2 == 62:  # Discover, UnionPay
        return _LONG
    if 300 <= p3 <= 305 or p2 in (36, 38):  # Diners Club
        return _DINERS
    if 3528 <= p4 <= 3589:  # JCB
        return _LONG
    return ()


def _luhn_sums(d: list[int]) -> tuple[list[int], list[int]]:
    """Prefix sums for the Luhn check of any window in O(1): in `even` the digits at
    odd positions are doubled, in `odd` those at even positions. A window ending at
    an even position uses `even` (its last digit is not doubled), otherwise `odd`."""
    even, odd = [0] * (len(d) + 1), [0] * (len(d) + 1)
    double = _LUHN_DOUBLE
    e_sum = o_sum = 0
    for i, digit in enumerate(d):
        if i % 2 == 0:
            e_sum += digit
            o_sum += double[digit]
        else:
            e_sum += double[digit]
            o_sum += digit
        even[i + 1], odd[i + 1] = e_sum, o_sum
    return even, odd


def _tag(digits: str) -> str:
    """Eight letters derived from the card number with a secret key.

    Masks of two different numbers with the same last four differ, so a unique column
    keeps them apart; without the key the letters say nothing about the number.
    """
    from django.conf import settings

    key = f"card-mask:{settings.SECRET_KEY}".encode()
    mac = hmac.new(key, digits.encode(), hashlib.sha256).digest()
    return "".join(chr(ord("a") + b % 26) for b in mac[:8])


Replacement = tuple[int, int, str]
_STARS = [b"*" * k for k in range(16)]
_MASKED_RUN_RE = re.compile(rb"[^\x00]+")


def _mask_chain(
    text: str,
    values: list[int],
    starts: Sequence[int],
    ends: Sequence[int],
    keyed: bool,
    out: list[Replacement],
) -> None:
    """Add a replacement for each digit of `values` that belongs to a card number."""
    n = len(values)
    if not any(values[s] in (2, 3, 4, 5, 6) for s in range(n - 12)):
        return  # no card brand starts with 0, 1, 7, 8 or 9
    hashes: list[tuple[int, int]] | None = None
    even, odd = _luhn_sums(values)
    masks = bytearray(n)
    run_start = run_end = -1  # the masked run that the next window may extend
    for s in range(n - 12):
        if values[s] not in (2, 3, 4, 5, 6):
            continue
        for length in _brand_lengths(values, s):
            e = s + length
            if e > n:
                break
            if run_start <= s and e - 4 <= run_end:
                continue  # masks nothing new (hostile runs of digits stay linear)
            sums = even if (e - 1) % 2 == 0 else odd
            if (sums[e] - sums[s]) % 10:
                continue
            if hashes is None:
                hashes = _hashes_around(text, starts[0], ends[-1])
            if hashes and any(
                h0 <= starts[s] and ends[e - 1] <= h1 for h0, h1 in hashes
            ):
                continue
            masks[s : e - 4] = _STARS[length - 4]
            if keyed:
                letters = _tag("".join(map(str, values[s:e])))
                masks[s + 1 : s + 1 + len(letters)] = letters.encode()
            if s > run_end:
                run_start = s
            run_end = max(run_end, e - 4)
    for run in _MASKED_RUN_RE.finditer(masks):
        for i in range(*run.span()):
            out.append((starts[i], ends[i], chr(masks[i])))


def _hashes_around(text: str, first: int, last: int) -> list[tuple[int, int]]:
    """The spans of our hashes and uuids that overlap text[first:last]."""
    lo, hi = max(0, first - 64), min(len(text), last + 64)
    return [
        m.span()
        for m in _HASH_RE.finditer(text, lo, hi)
        if not text[m.end() : m.end() + 1].isalnum() and m.start() < last
    ]


def _scan_stretch(
    text: str, start: int, end: int, keyed: bool, out: list[Replacement]
) -> None:
    """Find the chains of digit groups in text[start:end] and mask card numbers."""
    chunk = text[start:end]
    if chunk.isascii() and chunk.isdigit():  # the common case: one run of digits
        positions = range(start, end)
        values: list[int] = [b - 48 for b in chunk.encode()]
        _mask_chain(text, values, positions, range(start + 1, end + 1), keyed, out)
        return
    values = []
    starts: list[int] = []
    ends: list[int] = []
    cost = atoms = 0
    spaced = False
    for atom in _ATOM_RE.finditer(text, start, end):
        hex_code, escape, char = atom.groups()
        if hex_code is not None:
            char = chr(int(hex_code, 16))
        elif escape is not None:
            char = _JSON_ESCAPES[escape]
        value = _DIGIT_VALUES.get(char)
        if value is not None:
            if values and (cost + spaced > _MAX_GAP_COST or atoms > _MAX_GAP_ATOMS):
                if len(values) >= 13:
                    _mask_chain(text, values, starts, ends, keyed, out)
                values, starts, ends = [], [], []
            values.append(value)
            starts.append(atom.start())
            ends.append(atom.end())
            cost = atoms = 0
            spaced = False
            continue
        if char.isspace() or char in _ZERO_WIDTH:
            spaced = True
        elif char in _SEPARATORS:
            cost += 1
        else:  # an escape for something else ends the chain
            if len(values) >= 13:
                _mask_chain(text, values, starts, ends, keyed, out)
            values, starts, ends = [], [], []
        atoms += 1
    if len(values) >= 13:
        _mask_chain(text, values, starts, ends, keyed, out)


def card_number_replacements(text: str, keyed: bool = False) -> list[Replacement]:
    """Where card numbers are in `text`: (start, end, replacement) per masked digit,
    or per number literal in exponent form."""
    out: list[Replacement] = []
    stretches = _ASCII_STRETCH_RE if text.isascii() else _STRETCH_RE
    for stretch in stretches.finditer(text):
        start, end = stretch.span()
        if end - start >= 13:
            _scan_stretch(text, start, end, keyed, out)
        if end < len(text) and text[end] in "eE":
            _mask_exponent(text, start, end, keyed, out)
    return out


def _mask_exponent(
    text: str, start: int, end: int, keyed: bool, out: list[Replacement]
) -> None:
    """Mask a number like `5.1051051051051e15` that ends the stretch text[start:end]."""
    exponent = _EXPONENT_RE.match(text, end)
    if exponent is None:
        return
    first = end
    while first > start and text[first - 1] in "0123456789.":
        first -= 1
    if first > 0 and (text[first - 1].isalnum() or text[first - 1] == "."):
        return
    if out and out[-1][1] > first:  # its digits are masked already
        return
    try:
        number = Decimal(text[first : exponent.end()])
    except ArithmeticError:
        return
    if not 12 <= number.adjusted() <= 18 or number != number.to_integral_value():
        return
    digits = str(int(number))
    masked = apply_replacements(digits, card_number_replacements(digits, keyed))
    if masked != digits:
        out.append((first, exponent.end(), masked))


def apply_replacements(text: str, replacements: list[Replacement]) -> str:
    pieces, at = [], 0
    for start, end, replacement in replacements:
        pieces.append(text[at:start])
        pieces.append(replacement)
        at = end
    pieces.append(text[at:])
    return "".join(pieces)


def could_hold_card_number(text: str) -> bool:
    """A cheap first look: False for text too short to hold a card number (unless a
    number in exponent form). True says nothing yet; `mask_card_numbers` decides."""
    return len(text) >= 13 or bool(_SHORT_EXPONENT_RE.search(text))


def might_hold_card_number(text: str) -> bool:
    """Whether `text` holds what the storage net would mask as a card number.

    For refusing input ("this looks like a card number"): an e-mail address, a name or
    a random token of any length is not flagged unless digits in it form a number the
    net masks (Luhn-valid, a card's length, in any of the disguises it reads)."""
    return could_hold_card_number(text) and bool(card_number_replacements(text))


def mask_card_numbers(text: str, *, keyed: bool = False) -> tuple[str, bool]:
    """Mask every card number in `text` to its last four digits; say if any was found.

    `keyed` fills the masked digits with letters derived from the whole number, for
    columns where two different numbers must not become equal.
    """
    if not could_hold_card_number(text):
        return text, False
    replacements = card_number_replacements(text, keyed)
    if not replacements:
        return text, False
    return apply_replacements(text, replacements), True


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = _DIGIT_VALUES.get(ch)
        if d is None:
            raise ValueError(f"{ch!r} is not a digit")
        total += _LUHN_DOUBLE[d] if i % 2 == 1 else d
    return total % 10 == 0
