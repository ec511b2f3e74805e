"""Who paid: the Sage Pro customer behind a payer, from plain values.

A PayTrace payment says little about its payer: a vault `customer_id` (the card on
file), a billing name, sometimes an e-mail, and the card's brand, last four and
expiry. `identify` turns that into a Sage Pro customer, or into "unknown", from:

- payer links, the customer mapping table ("this payer is this customer"), which
  reviewers' decisions and accepted proposals fill in;
- a `customer_id` that is itself a Sage Pro customer number;
- an e-mail address that exactly one Sage Pro customer has on file, or else an address
  at a company domain (not a free mail provider's) that only one customer has
  addresses at;
- a billing name equal, once normalised, to exactly one customer's name (or, when none
  is, without the department words that end it: "Acme Tools - Accounts Payable").

Every piece of evidence is kept, and two pieces naming different customers make the
payer unknown (a conflict is never settled by guessing). The keys are normalised here,
once, for the caller's lookups and the links' storage alike.
"""

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

KINDS = ("customer_id", "email", "name", "card")
KIND_LABELS = {
    "customer_id": "PayTrace customer id",
    "email": "e-mail",
    "name": "billing name",
    "card": "card",
}
# Words that say what kind of company it is, not which one.
_COMPANY_WORDS = {
    "THE",
    "INC",
    "INCORPORATED",
    "LLC",
    "L",
    "LTD",
    "LIMITED",
    "CO",
    "COMPANY",
    "CORP",
    "CORPORATION",
    "PLC",
    "LLP",
    "LP",
    "GMBH",
    "AG",
    "SA",
    "AND",
}
# Words a payer adds after its name to say which of its departments paid
# ("Acme Tools Inc - Accounts Payable", "ACME AP DEPT").
_DEPARTMENT_WORDS = {
    "ACCOUNTS",
    "ACCOUNT",
    "ACCTS",
    "ACCT",
    "PAYABLE",
    "PAYABLES",
    "AP",
    "A",
    "P",
    "DEPT",
    "DEPARTMENT",
    "FINANCE",
    "ACCOUNTING",
    "BILLING",
    "TREASURY",
    "OFFICE",
    "ATTN",
}
# Mail providers anyone can have an address at: their domain says nothing of a company.
FREE_MAIL = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "ymail.com",
        "hotmail.com",
        "outlook.com",
        "live.com",
        "msn.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "protonmail.com",
        "proton.me",
        "gmx.com",
        "gmx.net",
        "mail.com",
        "zoho.com",
        "yandex.com",
        "comcast.net",
        "att.net",
        "verizon.net",
        "sbcglobal.net",
        "bellsouth.net",
        "cox.net",
        "charter.net",
        "earthlink.net",
        "web.de",
        "qq.com",
        "163.com",
    }
)
_EMAIL = re.compile(r"[A-Z0-9._%+'-]+@[A-Z0-9.-]+\.[A-Z]{2,}", re.IGNORECASE)
MAX_KEY = 120


def _plain(value: object) -> str:
    text = unicodedata.normalize("NFKC", str(value or "")[: MAX_KEY * 4])
    return "".join(ch if ch.isprintable() else " " for ch in text)


def customer_id_key(value: object) -> str:
    return " ".join(_plain(value).upper().split())[:MAX_KEY]


def email_keys(value: object) -> list[str]:
    """Every e-mail address in `value` (Sage keeps several in one field), lower case."""
    return list(dict.fromkeys(m.lower() for m in _EMAIL.findall(_plain(value))))[:10]


def customer_emails(value: object, limit: int = 400) -> str:
    """A customer's addresses as one searchable column: ";a@x.com;b@y.com;"."""
    text = ""
    for address in email_keys(value):
        if len(text) + len(address) + 2 > limit:
            break
        text = (text or ";") + address + ";"
    return text


def email_key(value: object) -> str:
    found = email_keys(value)
    return found[0][:MAX_KEY] if found else ""


def name_key(value: object) -> str:
    """A company or person name without case, accents, punctuation and legal words:
    'Acme Tools, Inc.' and 'ACME TOOLS' are the same key."""
    text = unicodedata.normalize("NFKD", _plain(value))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).upper()
    text = text.replace("&", " AND ").replace(".", "")  # "L.L.C." is LLC
    words = [w for w in re.split(r"[^A-Z0-9]+", text) if w and w not in _COMPANY_WORDS]
    return " ".join(words)[:MAX_KEY]


def without_department(key: str) -> str:
    """A name key without the department words that end it ('' when nothing was
    removed or nothing would be left)."""
    words = key.split()
    while len(words) > 1 and words[-1] in _DEPARTMENT_WORDS:
        words.pop()
    short = " ".join(words)
    return short if short != key else ""


def email_domain(email: str) -> str:
    """The company domain of an address ('' for a free mail provider's)."""
    domain = email.rpartition("@")[2]
    return "" if not domain or domain in FREE_MAIL else domain


def card_key(brand: object, last4: object, month: object, year: object) -> str:
    """Brand, last four and expiry: never a card number (the portal holds none)."""
    digits = re.sub(r"[^0-9]", "", str(last4 or ""))[-4:]
    if len(digits) != 4:
        return ""
    try:
        mm, yy = int(str(month)), int(str(year)) % 100
    except ValueError:
        return ""
    if not 1 <= mm <= 12:
        return ""
    return f"{customer_id_key(brand)[:20] or 'CARD'} {digits} {mm:02d}/{yy:02d}"


@dataclass(frozen=True)
class Payer:
    """What a payment says about who made it (keys already normalised)."""

    customer_id: str = ""
    name: str = ""
    email: str = ""
    card: str = ""

    def keys(self) -> dict[str, str]:
        return {
            kind: value
            for kind, value in (
                ("customer_id", self.customer_id),
                ("email", self.email),
                ("name", self.name),
                ("card", self.card),
            )
            if value
        }


@dataclass(frozen=True)
class Link:
    """One row of the customer mapping table, active."""

    kind: str
    key: str
    custno: str
    id: int | None = None
    source: str = ""


@dataclass(frozen=True)
class Customer:
    """A Sage Pro customer as identification needs it (keys normalised)."""

    custno: str
    name: str = ""
    emails: tuple[str, ...] = ()


@dataclass(frozen=True)
class Evidence:
    custno: str
    source: str  # "link", "customer_id", "email", "name"
    kind: str  # which payer key it rests on
    text: str
    link_id: int | None = None


@dataclass(frozen=True)
class Identity:
    """The customer behind a payer ('' when unknown) and why."""

    custno: str = ""
    evidence: tuple[Evidence, ...] = ()
    conflict: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def link_id(self) -> int | None:
        return next((e.link_id for e in self.evidence if e.link_id), None)

    def describe(self) -> str:
        if self.conflict:
            named = "; ".join(e.text for e in self.evidence)
            return f"the payer is unclear: {named}"
        if not self.custno:
            return "the payer is not known" + (
                f" ({'; '.join(self.notes)})" if self.notes else ""
            )
        return f"customer {self.custno} from " + "; ".join(
            e.text for e in self.evidence
        )


def identify(
    payer: Payer,
    links: Iterable[Link] = (),
    customers: Iterable[Customer] = (),
) -> Identity:
    """The Sage Pro customer behind `payer` (see the module docstring).

    `links` are the connection's active links (any may be passed; those that do not
    name this payer's keys are ignored); `customers` are the mirrored customers that
    might fit (by number, e-mail or name: the caller looks them up by key).
    """
    keys = payer.keys()
    evidence: list[Evidence] = []
    notes: list[str] = []
    linked_kinds = set()
    for link in links:
        if keys.get(link.kind) and keys[link.kind] == link.key and link.custno:
            linked_kinds.add(link.kind)
            evidence.append(
                Evidence(
                    link.custno,
                    "link",
                    link.kind,
                    f"the customer mapping ({KIND_LABELS.get(link.kind, link.kind)} "
                    f"{link.key} → {link.custno})",
                    link.id,
                )
            )
    customers = list(customers)
    if payer.customer_id and "customer_id" not in linked_kinds:
        same = [c for c in customers if c.custno.upper() == payer.customer_id]
        if same:
            evidence.append(
                Evidence(
                    same[0].custno,
                    "customer_id",
                    "customer_id",
                    f"PayTrace customer id {payer.customer_id}, a Sage Pro customer number",
                )
            )
        else:
            notes.append(
                f"PayTrace customer id {payer.customer_id} is no Sage Pro customer and "
                "no mapping names it"
            )
    if payer.email and "email" not in linked_kinds:
        owners = sorted({c.custno for c in customers if payer.email in c.emails})
        domain = email_domain(payer.email)
        if len(owners) == 1:
            evidence.append(
                Evidence(owners[0], "email", "email", f"e-mail {payer.email} on file")
            )
        elif owners:
            notes.append(f"e-mail {payer.email} is on file for {', '.join(owners)}")
        elif domain:
            at = f"@{domain}"
            owners = sorted(
                {c.custno for c in customers if any(e.endswith(at) for e in c.emails)}
            )
            if len(owners) == 1:
                evidence.append(
                    Evidence(
                        owners[0],
                        "email_domain",
                        "email",
                        f"e-mail {payer.email}, at {domain}, the domain only "
                        f"{owners[0]} has addresses at",
                    )
                )
            elif owners:
                notes.append(f"{domain} is the domain of {', '.join(owners)}")
    if payer.name and "name" not in linked_kinds:
        for name in filter(None, (payer.name, without_department(payer.name))):
            owners = sorted({c.custno for c in customers if c.name and c.name == name})
            if len(owners) == 1:
                shown = f"billing name {payer.name!r}" + (
                    ""
                    if name == payer.name
                    else f" (as {name!r}, without the department)"
                )
                evidence.append(Evidence(owners[0], "name", "name", shown))
            elif owners:
                notes.append(f"billing name {name!r} fits {', '.join(owners)}")
            if owners:
                break
    named = {e.custno.upper() for e in evidence}
    if len(named) > 1:
        return Identity("", tuple(evidence), True, tuple(notes))
    if not named:
        return Identity("", (), False, tuple(notes))
    return Identity(evidence[0].custno, tuple(evidence), False, tuple(notes))
