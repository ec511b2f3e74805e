"""Cash application: labelled payments in realistic styles through the real pipeline.

    .venv/bin/python -m bench.cash_application [--db sqlite|postgres|both]
        [--payments 600] [--seed 11] [--held-out [--held-out-payments 150]]
        [--blind [--blind-payments 150]] [--modes legacy,standard] [--verbose]
        [--show N] [--dump FILE]

What it measures (issue 11): the share of genuine payments the portal posts by itself,
per reference style, and the false applies, which must stay at 0.

1. A seeded generator (`World`) builds a Sage Pro ledger of its own and labelled
   PayTrace payments against it. Customers have a company name, a custno, one or two
   role e-mail addresses on file (`ap@…`, `billing@…`) and a card; their open invoices
   have realistic balances (log-normal around 850.00, 25.00–40,000.00, some round,
   some already partly paid), dates in the last 120 days in invoice-number order, an
   order number (`ORNUM`, 7 digits, most invoices) and often a PO number (`PONUM`:
   `4500123456`, `MNT-2291`, `2025-0412` or `77812B`); customers also have paid
   invoices, and some have two open invoices of the same amount. Invoice numbers
   start at 21001 with gaps (the bench's customers are a sample of the ledger). The
   demo seed's customers and invoices 10001–10059 stay as other customers' data.
2. Each payment is a PayTrace export record (`tests.webhooks.paytrace_record`:
   invoice_id, customer_reference_id (the customer's PO), customer_id, description,
   billing_address.name, receipt_emailed_to, the masked card) with a label: its style
   and the expected outcome, either the invoice(s) and amounts it pays or "review"
   (a trap: a person must decide).
3. The whole thing runs twice, each time on a fresh database in its own process
   (same seed, so the same ledger and payments): `legacy`, one matching rule the way
   the portal matched before issue 11 (exact references, no tolerance, partial
   payments allowed, every issue-11 option off, max_combination 1), and `standard`,
   no rules at all (the built-in standard rule).
4. Each run: seed the ledger into the Sage Pro sandbox, start gunicorn, sync the
   mirror (`integrations.mirror.sync`), start a real qcluster (as `bench.pipeline`
   does), send every payment as a signed `transaction.approved` webhook (4 senders),
   and wait until every event is processed and every receipt posting has settled.
5. Each payment's outcome is read from the portal: its cash-receipt posting (state,
   payload applications, `decided_automatically`) and its review items.

   - auto-posted: a posted receipt applied exactly as the label says, and no review
     item for the payment;
   - false apply: a receipt posting (any state) with applications that differ from
     the label (another invoice, a missing or extra invoice, another amount), or any
     application at all when the label says review;
   - reviewed: everything else (a review item, no posting, unapplied cash).

The default mix (shares of `--payments`, by largest remainder; the order is shuffled):

    style                  share  what the payment looks like
    exact                   20 %  invoice_id is the invoice number: 21045
    prefix                  14 %  INV-21045, Invoice #21045, inv 21045, #21045,
                                  Inv. 21045, No. 21045
    leading_zeros            4 %  0021045, 021045, 00021045, INV-0021045
    multiple                 9 %  two or three invoices, amount = their balances' sum:
                                  21045, 21046 / 21045/21046 / 21045 & 21046 /
                                  21045,21046 / 21045, 21046, 21047 / 21045/21046/21047
                                  / a range of consecutive ones 21045-21047
    typo                     6 %  one pair of digits transposed or one digit wrong, the
                                  result naming no invoice, order or PO and one edit
                                  from only that invoice among the customer's; exact
                                  balance; customer_id = the custno (60 %) or an
                                  e-mail on file (40 %)
    no_reference             8 %  invoice_id blank, "payment", "n/a" or "card payment";
                                  customer known as for typo; amount = the balance of
                                  exactly one of its open invoices
    po_number                6 %  the invoice's PONUM in customer_reference_id with
                                  invoice_id blank (60 %), or in invoice_id (40 %)
    order_number             5 %  the invoice's ORNUM: SO 5104512, SO#5104512,
                                  SO-5104512, Order #5104512, 5104512
    payer_only               6 %  no reference, no customer_id; the billing name is
                                  the customer's name (as on file, upper case, without
                                  or with a comma before its legal suffix) (55 %) or
                                  the billing e-mail is on file (45 %); amount = the
                                  balance of exactly one open invoice
    partial                  6 %  invoice_id = the invoice number, amount 20–90 % of
                                  the balance (often a round figure)
    surcharge                5 %  invoice_id = the invoice number, amount = balance
                                  × 1.0200–1.0300 (card surcharge)
    traps (label: review)
    trap_other_customer      3 %  names customer A's invoice (21045 or INV-21045) at
                                  its balance, the payer identified as customer B by
                                  customer_id (65 %) or an e-mail on file (35 %)
    trap_equal_invoices      2 %  no reference, customer known, two of its open
                                  invoices have exactly the amount
    trap_transposition       2 %  one transposition (one digit changed when no
                                  transposition names nothing) from an open invoice of
                                  the known customer, as for typo; the amount neither
                                  its balance (nor within 3 % of it) nor any open
                                  invoice's or combination's
    trap_names_nothing       2 %  a reference naming no invoice, order or PO and not
                                  one edit from any invoice ("Acct 70412", "Job
                                  4471-B", "Statement", "Deposit"…); customer known; no
                                  open invoice or combination of up to 5 comes within
                                  3 % of the amount
    trap_conflicting_payer   2 %  customer_id names customer A, the billing e-mail is
                                  on file for customer B; no reference; amount = one
                                  of A's open invoices (B has none of that amount)

Genuine payments never carry conflicting payer details. Beside what a style needs,
a reference-style payment's payer details are what card payments usually carry:
customer_id the custno or blank (half each), a billing name (a person's, or 20 % the
company's), sometimes an e-mail (on file 35 %, a person's address not on file 25 %),
customer_reference_id the invoice's PO (30 %), a PO not on file (15 %) or blank, and a
description without digits. Payments whose label depends on the customer's other
invoices (amounts, near misses, traps) each get a customer of their own, so the order
in which the workers take the payments cannot change a label; the reference styles
share customers (about 2.5 payments each), one target invoice per payment.
`World.check` verifies the labels again on the finished world (every paid invoice open
and the payer's, every typo naming nothing and one edit from only its invoice, every
trap's amount clear of every invoice and combination, no payer detail naming another
customer); a run refuses to start when it finds a problem.

HELD-OUT styles, generated only with `--held-out` (`--held-out-payments`, default a
quarter of `--payments`, equal shares), on customers and invoices of their own after
the default mix's (which they leave unchanged), and never looked at while tuning:

    ho_trailing_text      21045 thanks, 21045 - thank you, pmt for inv 21045,
                          Payment for invoice 21045
    ho_glued_lower        inv#21045, inv21045, invoice#21045
    ho_and_list           Invoices 21045 and 21046, Invoices 21045, 21046 and 21047
                          (amount = the sum)
    ho_to_range           21045 to 21047, 21045 thru 21047 (consecutive, the sum)
    ho_full_width         ２１０４５, INV-２１０４５ (full-width digits)
    ho_description_only   invoice_id blank, description "Payment for invoice 21045"
                          or "Inv 21045"
    ho_email_case         no reference, no customer_id, the billing e-mail on file
                          in other case (PAYABLES@Summitdental.Example); amount = the
                          balance of exactly one open invoice

BLIND styles, generated only with `--blind` (`--blind-payments`, default a quarter of
`--payments`, equal shares), on customers and invoices of their own after the default
mix's and the held-out set's (both unchanged by them). Written from how B2B payers
fill in the reference of a card payment, without reading the matching code:

    bl_account_number     the customer's account number (custno) beside the invoice:
                          Acct SUMMDE Inv 21045, SUMMDE - 21045, 21045 acct SUMMDE
    bl_invoice_and_po     Inv 21045 PO 4500123456, INV#21045 PO#MNT-2291, PO 4471 Inv
                          21045: the invoice's own PONUM (about 70 %) or a PO the
                          ledger does not hold (naming nothing)
    bl_trailing_date      21045 11/30, 21045 11/30/26, Inv 21045 paid 11/30,
                          INV 21045 11-30-2026, 21045 Nov 30
    bl_separators         21045; 21046, #21045 #21046, 21045 + 21046, 21045 21046,
                          INV 21045 INV 21046 (two or three; amount = the sum)
    bl_payer_reference    the payer's own voucher or payment number beside the
                          invoice: PMT 000482913 INV 21045, Voucher 482913 / Inv
                          21045, Inv 21045 (our ref 482913) (naming nothing)
    bl_less_credit        21045 less CM 21050, Inv 21045 less credit 21050: an open
                          credit memo of the customer; amount = balance - credit,
                          applied to the invoice (a receipt applies no negative
                          amount; the memo is netted against it in Sage Pro)
    bl_dropped_doubled    one digit dropped (2145) or doubled (210045), naming nothing
                          and one edit from only that invoice of the customer; exact
                          balance; customer_id = the custno or an e-mail on file
    bl_description_junk_id  invoice_id junk (1, 0, N/A, web, VT, -), the reference in
                          the description: Invoice #21045, INV21045, Inv. 21045
                          Summit Dental LLC
    bl_name_variant       no reference, no customer_id, no e-mail; the billing name is
                          the customer's written otherwise (SUMMIT DENTAL L.L.C., The
                          Summit Dental Inc., Tile and Stone for Tile & Stone, Elm St
                          for Elm Street, "- Accounts Payable"); amount = exactly one
                          open invoice's balance
    bl_other_mailbox      no reference, no customer_id; an e-mail at the customer's
                          domain in a mailbox not on file (purchasing@, m.lopez@…);
                          amount = exactly one open invoice's balance
    traps (label: review)
    bl_trap_amount_other_invoice  names an open invoice of the known customer; the
                          amount is, to the cent, another open invoice's balance (not
                          a round figure, under 90 % of the named one's, the two
                          numbers not one edit apart): a partial payment, or the other
                          invoice under a wrong number?
    bl_trap_amount_only   no reference, no customer_id, a person's free-mail address
                          and name, a card no customer has used; the amount is one
                          open invoice's balance: who paid?

`--show N` prints N generated payments per style and stops (no database);
`--dump FILE` writes every labelled payment as JSON. Goal (issue 11): in `standard`,
≥ 90 % of the genuine mix auto-posted, and of the held-out and blind sets; 0 false
applies in every run. Exit status 1 when a run failed or did not settle, or `standard` applied a
payment falsely; a missed share is printed (`MISSED`) but does not fail the run, as in
the other benchmarks; `legacy`'s false applies are reported as the "before".
"""

import argparse
import json
import math
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from itertools import combinations
from pathlib import Path

from bench import harness
from bench.harness import WEBHOOK_PATH, Delivery, say

ROOT = Path(__file__).resolve().parents[1]
CENT = Decimal("0.01")
ZERO = Decimal("0.00")
GOAL = 0.90
FIRST_INVNO = 21001
FIRST_ORNUM = 5_100_000
FIRST_TXN = 910_000_000
MAX_AGE_DAYS = 120
MAX_COMBINATION = 5  # traps stay clear of every combination up to this size
TOLERANCE = Decimal("0.03")  # traps stay this far from any amount that would fit
MODES = ("legacy", "standard")
LEGACY_RULE = {
    "name": "legacy: exact reference (before issue 11)",
    "priority": 1,
    "reference_mode": "exact",
    "strip_prefixes": "INV-,INV,SO-,#",
    "tolerance_type": "none",
    "tolerance_value": ZERO,
    "require_same_customer": True,
    "auto_apply": True,
    "allow_partial": True,
    "multiple_invoices": False,
    "order_numbers": False,
    "near_misses": False,
    "identify_payer": False,
    "by_amount": False,
    "max_combination": 1,
}


@dataclass(frozen=True)
class Style:
    name: str
    share: int  # percent of the default mix (held-out: equal weights)
    trap: bool = False


MIX = (
    Style("exact", 20),
    Style("prefix", 14),
    Style("leading_zeros", 4),
    Style("multiple", 9),
    Style("typo", 6),
    Style("no_reference", 8),
    Style("po_number", 6),
    Style("order_number", 5),
    Style("payer_only", 6),
    Style("partial", 6),
    Style("surcharge", 5),
    Style("trap_other_customer", 3, trap=True),
    Style("trap_equal_invoices", 2, trap=True),
    Style("trap_transposition", 2, trap=True),
    Style("trap_names_nothing", 2, trap=True),
    Style("trap_conflicting_payer", 2, trap=True),
)
HELD_OUT = (
    Style("ho_trailing_text", 1),
    Style("ho_glued_lower", 1),
    Style("ho_and_list", 1),
    Style("ho_to_range", 1),
    Style("ho_full_width", 1),
    Style("ho_description_only", 1),
    Style("ho_email_case", 1),
)
# Written without reading the matching code, from how B2B payers fill in a card
# payment's reference (virtual terminal, payment links, AP departments).
BLIND = (
    Style("bl_account_number", 1),
    Style("bl_invoice_and_po", 1),
    Style("bl_trailing_date", 1),
    Style("bl_separators", 1),
    Style("bl_payer_reference", 1),
    Style("bl_less_credit", 1),
    Style("bl_dropped_doubled", 1),
    Style("bl_description_junk_id", 1),
    Style("bl_name_variant", 1),
    Style("bl_other_mailbox", 1),
    Style("bl_trap_amount_other_invoice", 1, trap=True),
    Style("bl_trap_amount_only", 1, trap=True),
)
TRAPS = frozenset(s.name for s in (*MIX, *BLIND) if s.trap)

# The demo seed (integrations.sandbox.sagepro.seed), which every run also holds:
# invoices 10001-10059, their orders invno + 4043000, and its customers.
DEMO_INVNOS = tuple(str(n) for n in range(10001, 10060))
DEMO_NUMBERS = frozenset(DEMO_INVNOS) | {
    str(n + 4_043_000) for n in range(10001, 10060)
}
DEMO_CUSTNOS = frozenset(
    ("ACME", "BLUEOX", "CASCAD", "DELTA", "EVERGR", "FOXRUN", "GRANIT", "HARBOR",
     "HOLDCO", "IRONWD", "JUNIPR", "ZEROBL")
)  # fmt: skip
DEMO_NAMES = (
    "Acme Supply",
    "Blue Ox Hardware",
    "Cascade Outfitters",
    "Delta Marine Parts",
    "Evergreen Landscaping",
    "Fox Run Vineyards",
    "Granite State Tools",
    "Harbor Freight Lines",
    "Holdover Contracting",
    "Ironwood Cabinets",
    "Juniper Dental Group",
    "Zero Balance Bakery",
)

FIRST_WORDS = (
    "Alder", "Apex", "Aspen", "Atlas", "Bayside", "Beacon", "Birch", "Blue Ridge",
    "Boulder", "Bridgeway", "Brightwater", "Canyon", "Cedar", "Centennial", "Coastal",
    "Copper", "Crescent", "Crown", "Eagle", "Elm Street", "Fairview", "Falcon",
    "Frontier", "Garnet", "Glacier", "Golden", "Hawthorne", "Highland", "Horizon",
    "Keystone", "Lakeside", "Liberty", "Lighthouse", "Maple", "Meadow", "Mesa",
    "Midland", "Northgate", "Oakridge", "Pacific", "Pinnacle", "Pioneer", "Prairie",
    "Redwood", "Ridgeline", "Riverbend", "Sagebrush", "Salmon Creek", "Sierra",
    "Silverline", "Summit", "Sunrise", "Timberline", "Valley", "Westfield", "Willow",
)  # fmt: skip
TRADES = (
    "Supply", "Hardware", "Dental", "Landscaping", "Electric", "Plumbing", "Marine",
    "Auto Parts", "Builders", "Cabinets", "Roofing", "Flooring", "Veterinary",
    "Bakery", "Brewing", "Foods", "Logistics", "Printing", "Medical", "Machine Works",
    "Tile & Stone", "Glass", "Heating", "Nursery", "Optical", "Paint", "Pharmacy",
    "Signs", "Tools", "Welding",
)  # fmt: skip
# Legal suffixes only: "Summit Dental LLC" and "SUMMIT DENTAL" are the same payer.
SUFFIXES = ("Inc", "Inc.", "LLC", "Co", "Co.", "Corp", "Ltd", "Company", "", "")
LEGAL_WORDS = frozenset(("INC", "LLC", "CO", "CORP", "LTD", "COMPANY"))
PEOPLE_FIRST = (
    "Maria", "James", "Linda", "Robert", "Priya", "Chen", "Ahmed", "Sofia", "Daniel",
    "Grace", "Kevin", "Laura", "Omar", "Hannah", "Luis", "Megan", "Tom", "Yuki",
    "Elena", "Sam",
)  # fmt: skip
PEOPLE_LAST = (
    "Lopez", "Smith", "Nguyen", "Patel", "Johnson", "Garcia", "Kim", "Brown",
    "Okafor", "Miller", "Rossi", "Schmidt", "Davis", "Silva", "Cohen", "Wilson",
    "Tanaka", "Murphy", "Khan", "Anderson",
)  # fmt: skip
PLACES = (
    ("Portland", "OR", "97205"), ("Eugene", "OR", "97401"), ("Bend", "OR", "97701"),
    ("Seattle", "WA", "98104"), ("Tacoma", "WA", "98402"), ("Spokane", "WA", "99201"),
    ("Boise", "ID", "83702"), ("Reno", "NV", "89501"), ("Sacramento", "CA", "95814"),
    ("Fresno", "CA", "93721"),
)  # fmt: skip
ROLE_MAILBOXES = ("ap", "accounts", "billing", "payables", "office")
SECOND_MAILBOXES = ("controller", "finance", "bookkeeping")
PO_CODES = ("MNT", "OPS", "FAC", "LAB", "SHP", "ENG", "MKT", "ADM", "FLT", "SVC")
DESCRIPTIONS = ("", "", "", "Online payment", "Card payment", "Payment - thank you")
NO_REFERENCE = ("", "", "", "", "payment", "n/a", "card payment")
# Blind set: what a virtual terminal's required invoice field gets when the
# reference went into the description; mailboxes no customer has on file; the
# free-mail domains people pay from.
JUNK_IDS = ("1", "0", "000", "N/A", "none", "web", "-", ".", "VT", "x")
OTHER_MAILBOXES = ("accounting", "payments", "purchasing", "invoices", "admin", "info")
FREE_MAIL = ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "aol.com")
# Words a billing name adds around the company's name (see loose_name_key).
NAME_NOISE = frozenset(
    ("THE", "INCORPORATED", "CORPORATION", "LIMITED", "AP", "DEPT", "ACCOUNTS",
     "ACCTS", "PAYABLE")
)  # fmt: skip

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# --- small pure helpers ------------------------------------------------------------------


def number_key(text: str) -> str:
    """How the generator keeps its numbers apart: upper case, letters and digits only,
    leading zeros dropped (the bench's own key, independent of the portal's)."""
    return re.sub(r"[^0-9A-Z]", "", text.upper()).lstrip("0")


def digit_runs(text: str) -> list[str]:
    return [run.lstrip("0") for run in re.findall(r"[0-9]+", text) if run.strip("0")]


def neighbours(key: str) -> Iterator[str]:
    """Every string one edit from `key`: one character changed, missing, extra, or
    two adjacent characters swapped."""
    for i in range(len(key)):
        yield key[:i] + key[i + 1 :]
        for ch in _ALPHABET:
            if ch != key[i]:
                yield key[:i] + ch + key[i + 1 :]
        if i + 1 < len(key) and key[i] != key[i + 1]:
            yield key[:i] + key[i + 1] + key[i] + key[i + 2 :]
    for i in range(len(key) + 1):
        for ch in _ALPHABET:
            yield key[:i] + ch + key[i:]


def is_one_edit(a: str, b: str) -> bool:
    return a != b and a in set(neighbours(b))


def name_key(name: str) -> str:
    words = re.split(r"[^A-Z0-9]+", name.upper().replace("&", " AND "))
    return " ".join(w for w in words if w and w not in LEGAL_WORDS | {"AND"})


def loose_name_key(name: str) -> str:
    """A billing name as a person reads it against the ledger: case, punctuation,
    legal suffixes however written, "&"/"and", a leading "The", "St"/"Street" and an
    AP department after a dash make no difference."""
    text = re.split(r"\s+-\s+", name.upper())[0].replace(".", "")
    words = re.split(r"[^A-Z0-9]+", text.replace("&", " AND "))
    words = ["STREET" if w == "ST" else w for w in words]
    return " ".join(
        w for w in words if w and w not in LEGAL_WORDS | NAME_NOISE | {"AND"}
    )


def full_width(text: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if ch.isdigit() else ch for ch in text)


def money(value: Decimal) -> str:
    return f"{value.quantize(CENT)}"


def allocate(total: int, styles: Iterable[Style]) -> list[tuple[Style, int]]:
    """`total` payments over the styles by their shares (largest remainder)."""
    styles = list(styles)
    weight = sum(s.share for s in styles)
    exact = [(s, total * s.share / weight) for s in styles]
    counts = {s.name: math.floor(x) for s, x in exact}
    left = total - sum(counts.values())
    by_remainder = sorted(exact, key=lambda item: (-(item[1] % 1), item[0].name))
    for style, _ in by_remainder[:left]:
        counts[style.name] += 1
    return [(s, counts[s.name]) for s in styles]


# --- the world -----------------------------------------------------------------------------


@dataclass(eq=False)
class Customer:
    custno: str
    name: str
    emails: tuple[str, ...]
    domain: str
    card_last4: str
    card_month: int
    card_year: int
    place: tuple[str, str, str]
    invoices: list["Invoice"] = field(default_factory=list)

    def open_balances(self) -> list[Decimal]:
        return [i.balance for i in self.invoices if i.balance > 0]


@dataclass(eq=False)
class Invoice:
    customer: Customer
    balance: Decimal
    paid: Decimal = ZERO
    ponum: str = ""
    has_order: bool = True
    invno: str = ""  # numbered once the group is planned
    ornum: str = ""
    age_days: int = 0

    @property
    def invamt(self) -> Decimal:
        return self.balance + self.paid

    @property
    def is_credit(self) -> bool:
        """A credit memo (Sage Pro ARTYPE 'C'): a negative balance."""
        return self.balance < 0


@dataclass
class Payment:
    payer: Customer
    amount: Decimal
    fields: dict  # the PayTrace record's fields besides id, amount and times
    expected: tuple[tuple[str, Decimal], ...] | None  # None: a person decides
    style: str = ""
    group: str = ""  # "mix", "held-out" or "blind"
    transaction_id: int = 0

    def describe(self) -> str:
        f = self.fields
        payer = ", ".join(
            part
            for part in (
                f"customer_id {f['customer_id']!r}" if f["customer_id"] else "",
                f"e-mail {f['receipt_emailed_to']!r}"
                if f["receipt_emailed_to"]
                else "",
                f"billing name {f['billing_address']['name']!r}",
                f"PO {f['customer_reference_id']!r}"
                if f["customer_reference_id"]
                else "",
                f"description {f['description']!r}" if f["description"] else "",
            )
            if part
        )
        expected = (
            "review"
            if self.expected is None
            else " + ".join(f"{invno} {money(amt)}" for invno, amt in self.expected)
        )
        return (
            f"invoice_id {f['invoice_id']!r}, amount {money(self.amount)} "
            f"({payer}; payer {self.payer.custno}) → {expected}"
        )

    def as_json(self) -> dict:
        return {
            "transaction_id": self.transaction_id,
            "style": self.style,
            "group": self.group,
            "payer": self.payer.custno,
            "amount": money(self.amount),
            "fields": self.fields,
            "expected": None
            if self.expected is None
            else [[invno, money(amt)] for invno, amt in self.expected],
        }


Finish = Callable[[], Payment]


class World:
    """The ledger and the labelled payments, all from one seed.

    Planning a payment creates the customer and invoices it needs and returns a
    function that writes the payment once every invoice of its group is numbered.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.customers: list[Customer] = []
        self.invoices: list[Invoice] = []
        self.payments: list[Payment] = []
        self.custnos: set[str] = set(DEMO_CUSTNOS)
        self.names: set[str] = {name_key(n) for n in DEMO_NAMES}
        self.domains: set[str] = set()
        self.last4s: set[str] = set()
        self.ponums: set[str] = set()
        # Every number the ledger knows (invoice, order and PO keys, and the digit runs
        # in PO numbers): a typo or a trap's reference must name none of them.
        self.keys: set[str] = set(DEMO_NUMBERS)
        # Numbers payments write that must name nothing (typos, traps' references):
        # invoices numbered later skip them.
        self.reserved: set[str] = set()
        self.next_invno = FIRST_INVNO
        self.next_ornum = FIRST_ORNUM
        self.rng = random.Random()
        self._units: list[list[Invoice]] = []
        self._pool: list[Customer] = []

    # --- the groups ------------------------------------------------------------------

    def generate(self, payments: int, held_out: int = 0, blind: int = 0) -> "World":
        self._group("mix", MIX, payments)
        if held_out:
            self._group("held-out", HELD_OUT, held_out)
        if blind:
            self._group("blind", BLIND, blind)
        for i, payment in enumerate(self.payments):
            payment.transaction_id = FIRST_TXN + i
        return self

    def _group(self, group: str, styles: tuple[Style, ...], count: int) -> None:
        self.rng = random.Random(f"{self.seed}:{group}")
        self._units = []
        plan = allocate(count, styles)
        shared = sum(n for s, n in plan if s.name in SHARED_STYLES)
        self._pool = [self._customer() for _ in range(max(1, round(shared / 2.5)))]
        for customer in self._pool:
            self._background(customer, self.rng.randint(1, 4), self.rng.randint(0, 3))
            if self.rng.random() < 0.1:  # a monthly fee billed twice, still open
                fee = self._amount()
                self._invoice(customer, fee)
                self._invoice(customer, fee)
        finishers: list[tuple[str, Finish]] = []
        for style, n in plan:
            planner = getattr(self, f"_plan_{style.name}")
            finishers += [(style.name, planner()) for _ in range(n)]
        self._number()
        payments = []
        for style, finish in finishers:
            payment = finish()
            payment.style, payment.group = style, group
            payments.append(payment)
        self.rng.shuffle(payments)
        self.payments += payments

    def _number(self) -> None:
        """Invoice numbers (with gaps: other customers' invoices), order numbers and
        dates, oldest first, over the group's invoices in a shuffled order; the
        invoices of one block (a range payment) get consecutive numbers."""
        rng = self.rng
        rng.shuffle(self._units)
        total = sum(len(u) for u in self._units)
        done = 0
        for unit in self._units:
            age = MAX_AGE_DAYS - (MAX_AGE_DAYS - 1) * done // max(total, 1)
            age = min(MAX_AGE_DAYS, max(1, age + rng.randint(-3, 3)))
            self.next_invno += rng.choice((0, 0, 1, 2, 3))
            while any(
                str(self.next_invno + k) in self.keys | self.reserved
                for k in range(len(unit))
            ):
                self.next_invno += 1
            for invoice in unit:
                invoice.invno = str(self.next_invno)
                self.next_invno += 1
                if invoice.has_order:
                    invoice.ornum = str(self.next_ornum + rng.randint(0, 2))
                    self.next_ornum += 3
                invoice.age_days = age
                self.keys.add(invoice.invno)
                if invoice.ornum:
                    self.keys.add(invoice.ornum)
                done += 1

    # --- customers and invoices ---------------------------------------------------------

    def _customer(self) -> Customer:
        rng = self.rng
        for _ in range(10_000):
            first, trade = rng.choice(FIRST_WORDS), rng.choice(TRADES)
            suffix = rng.choice(SUFFIXES)
            name = f"{first} {trade}" + (f" {suffix}" if suffix else "")
            if len(name) <= 35 and name_key(name) not in self.names:
                break
        else:
            raise RuntimeError("ran out of customer names: use fewer payments")
        self.names.add(name_key(name))
        letters = (
            re.sub(r"[^A-Z]", "", first.upper())[:4]
            + re.sub(r"[^A-Z]", "", trade.upper())[:2]
        )
        custno = letters
        counter = 0
        while custno in self.custnos:
            counter += 1
            custno = f"{letters[:4]}{counter:02d}"
        self.custnos.add(custno)
        domain = re.sub(r"[^a-z]", "", f"{first}{trade}".lower()) + ".example"
        while domain in self.domains:
            domain = f"{domain.removesuffix('.example')}{rng.randint(2, 9)}.example"
        self.domains.add(domain)
        emails = [f"{rng.choice(ROLE_MAILBOXES)}@{domain}"]
        if rng.random() < 0.3:
            emails.append(f"{rng.choice(SECOND_MAILBOXES)}@{domain}")
        last4 = f"{rng.randint(0, 9999):04d}"
        while last4 in self.last4s:
            last4 = f"{rng.randint(0, 9999):04d}"
        self.last4s.add(last4)
        customer = Customer(
            custno=custno,
            name=name,
            emails=tuple(emails),
            domain=domain,
            card_last4=last4,
            card_month=rng.randint(1, 12),
            card_year=rng.randint(27, 31),
            place=rng.choice(PLACES),
        )
        self.customers.append(customer)
        return customer

    def _amount(self) -> Decimal:
        """A realistic balance: log-normal around 850.00, 25.00-40,000.00, 15 % round.

        The random draw is a float; it becomes whole cents at once (no float money)."""
        cents = int(math.exp(self.rng.gauss(math.log(850), 1.0)) * 100)
        cents = min(4_000_000, max(2_500, cents))
        if self.rng.random() < 0.15:
            cents -= cents % (1000 if cents > 100_000 else 100)
        return (Decimal(cents) / 100).quantize(CENT)

    def _ponum(self) -> str:
        rng = self.rng
        while True:
            form = rng.random()
            if form < 0.4:
                ponum = f"45{rng.randint(0, 99_999_999):08d}"
            elif form < 0.7:
                ponum = f"{rng.choice(PO_CODES)}-{rng.randint(1000, 9999)}"
            elif form < 0.85:
                ponum = f"{rng.randint(2024, 2026)}-{rng.randint(1, 1999):04d}"
            else:
                ponum = f"{rng.randint(60000, 99999)}{rng.choice('ABCDEFGH')}"
            key = number_key(ponum)
            fragments = digit_runs(ponum)
            # Unique, and naming nothing a typo or a trap's reference uses (the digit
            # runs are what a reference parser may read out of it).
            if key in self.keys | self.reserved or self.reserved.intersection(
                fragments
            ):
                continue
            self.ponums.add(ponum)
            self.keys.add(key)
            self.keys.update(fragments)
            return ponum

    def _invoice(
        self,
        customer: Customer,
        balance: Decimal,
        *,
        paid: bool = False,
        block: list[Invoice] | None = None,
        ponum: bool | None = None,
        has_order: bool | None = None,
    ) -> Invoice:
        rng = self.rng
        prior = ZERO
        if paid:
            prior, balance = balance, ZERO
        elif rng.random() < 0.1:  # partly paid before
            prior = (balance * Decimal(rng.randint(20, 60)) / 100).quantize(CENT)
        want_po = rng.random() < 0.6 if ponum is None else ponum
        invoice = Invoice(
            customer=customer,
            balance=balance,
            paid=prior,
            ponum=self._ponum() if want_po else "",
            has_order=rng.random() < 0.85 if has_order is None else has_order,
        )
        customer.invoices.append(invoice)
        self.invoices.append(invoice)
        if block is None:
            self._units.append([invoice])
        else:
            block.append(invoice)
        return invoice

    def _block(self, customer: Customer, size: int) -> list[Invoice]:
        """`size` open invoices of one customer with consecutive numbers."""
        block: list[Invoice] = []
        for _ in range(size):
            self._invoice(customer, self._amount(), block=block)
        self._units.append(block)
        return block

    def _background(
        self,
        customer: Customer,
        open_count: int,
        paid_count: int,
        avoid: Iterable[Decimal] = (),
    ) -> None:
        """Other invoices of the customer: open ones of distinct balances (none in
        `avoid`, nor equal to another) and paid ones."""
        taken = set(avoid) | set(customer.open_balances())
        for _ in range(open_count):
            balance = self._amount()
            while balance in taken:
                balance = self._amount()
            taken.add(balance)
            self._invoice(customer, balance)
        for _ in range(paid_count):
            self._invoice(customer, self._amount(), paid=True)

    def _exclusive(self, open_count: tuple[int, int] = (1, 5)) -> Customer:
        """A customer for one payment whose label depends on its other invoices."""
        customer = self._customer()
        self._background(
            customer, self.rng.randint(*open_count), self.rng.randint(0, 2)
        )
        return customer

    def _target(
        self, customer: Customer, at_least: Decimal = ZERO, **kwargs: bool
    ) -> Invoice:
        """A new open invoice whose balance no other open invoice of the customer has."""
        balance = self._amount()
        while balance in customer.open_balances() or balance < at_least:
            balance = self._amount()
        return self._invoice(customer, balance, **kwargs)

    def _shared(self) -> Customer:
        return self.rng.choice(self._pool)

    # --- payer details ------------------------------------------------------------------

    def _person(self) -> tuple[str, str]:
        return self.rng.choice(PEOPLE_FIRST), self.rng.choice(PEOPLE_LAST)

    def _pay(
        self,
        payer: Customer,
        amount: Decimal,
        expected: tuple[tuple[str, Decimal], ...] | None,
        *,
        invoice_id: str = "",
        po: str = "",
        customer_id: str = "",
        email: str = "",
        billing_name: str = "",
        description: str | None = None,
    ) -> Payment:
        """A payment by `payer` and its label (`expected` None: a person decides)."""
        first, last = self._person()
        city, state, zip_code = payer.place
        record = {
            "invoice_id": invoice_id,
            "customer_reference_id": po,
            "customer_id": customer_id,
            "description": self.rng.choice(DESCRIPTIONS)
            if description is None
            else description,
            "receipt_emailed_to": email,
            "credit_card": {
                "masked_number": "*" * 12 + payer.card_last4,
                "expiration_month": payer.card_month,
                "expiration_year": payer.card_year,
            },
            "billing_address": {
                "name": billing_name or f"{first} {last}",
                "street_address": f"{self.rng.randint(100, 9999)} Main St",
                "street_address2": "",
                "city": city,
                "state": state,
                "zip": zip_code,
                "country": "US",
            },
        }
        return Payment(payer, amount, record, expected)

    def _loose(self, customer: Customer) -> dict:
        """What a card payment usually says about its payer (never another customer)."""
        rng = self.rng
        first, last = self._person()
        roll = rng.random()
        if roll < 0.35:
            email = customer.emails[0]
        elif roll < 0.6:
            email = f"{first.lower()}.{last.lower()}@{customer.domain}"
        else:
            email = ""
        return {
            "customer_id": customer.custno if rng.random() < 0.5 else "",
            "email": email,
            "billing_name": customer.name if rng.random() < 0.2 else "",
        }

    def _known(self, customer: Customer, by_customer_id: float = 0.6) -> dict:
        """Payer details that identify the customer: customer_id, or an e-mail on file."""
        if self.rng.random() < by_customer_id:
            email = customer.emails[0] if self.rng.random() < 0.3 else ""
            return {"customer_id": customer.custno, "email": email}
        return {"email": self.rng.choice(customer.emails)}

    def _po_for(self, invoice: Invoice) -> str:
        roll = self.rng.random()
        if roll < 0.3 and invoice.ponum:
            return invoice.ponum
        if roll < 0.45:
            while True:
                po = f"CC-{self.rng.randint(100_000, 999_999)}"
                if po not in self.ponums:
                    return po
        return ""

    def _paying(
        self,
        invoices: list[Invoice],
        reference: str,
        amount: Decimal | None = None,
        applied: Decimal | None = None,
    ) -> Payment:
        """A payment naming `invoices` (of one customer) by `reference`, with loose
        payer details: their balances' sum by default; `applied` for one invoice."""
        customer = invoices[0].customer
        total = sum((i.balance for i in invoices), ZERO)
        expected = tuple(
            (i.invno, i.balance if applied is None else applied) for i in invoices
        )
        return self._pay(
            customer,
            total if amount is None else amount,
            expected,
            invoice_id=reference,
            po=self._po_for(invoices[0]),
            **self._loose(customer),
        )

    # --- reference styles (shared customers) -----------------------------------------

    def _named(self, forms: tuple[str, ...], **kwargs: bool) -> Finish:
        """Pay one new invoice of a shared customer, named by one of `forms`."""
        invoice = self._target(self._shared(), **kwargs)
        return lambda: self._paying(
            [invoice], self.rng.choice(forms).format(invoice.invno)
        )

    def _plan_exact(self) -> Finish:
        return self._named(("{}",))

    def _plan_prefix(self) -> Finish:
        return self._named(
            ("INV-{}", "Invoice #{}", "inv {}", "#{}", "Inv. {}", "No. {}")
        )

    def _plan_leading_zeros(self) -> Finish:
        return self._named(("00{}", "0{}", "000{}", "INV-00{}"))

    def _plan_order_number(self) -> Finish:
        invoice = self._target(self._shared(), has_order=True)
        forms = ("SO {}", "SO#{}", "SO-{}", "Order #{}", "{}")
        return lambda: self._paying(
            [invoice], self.rng.choice(forms).format(invoice.ornum)
        )

    def _plan_po_number(self) -> Finish:
        invoice = self._target(self._shared(), ponum=True)

        def finish() -> Payment:
            payment = self._paying([invoice], "")
            if self.rng.random() < 0.6:
                payment.fields["customer_reference_id"] = invoice.ponum
            else:
                payment.fields["invoice_id"] = invoice.ponum
                payment.fields["customer_reference_id"] = ""
            return payment

        return finish

    def _several(self, forms2: tuple, forms3: tuple, ranges: tuple) -> Finish:
        """Two or three invoices of one customer named together (30 % of the time a
        range of consecutive ones, when there are `ranges` forms); amount = the sum."""
        customer = self._shared()
        block = bool(ranges) and self.rng.random() < 0.3
        if block:
            invoices = self._block(customer, self.rng.choice((2, 3, 3)))
        else:
            size = 2 if self.rng.random() < 0.75 else 3
            invoices = [self._target(customer) for _ in range(size)]

        def finish() -> Payment:
            numbers = sorted((i.invno for i in invoices), key=int)
            if block:
                form = self.rng.choice(ranges).format(numbers[0], numbers[-1])
            else:
                form = self.rng.choice(forms2 if len(numbers) == 2 else forms3)
            return self._paying(
                sorted(invoices, key=lambda i: int(i.invno)), form.format(*numbers)
            )

        return finish

    def _plan_multiple(self) -> Finish:
        return self._several(
            ("{}, {}", "{}/{}", "{} & {}", "{},{}"),
            ("{}, {}, {}", "{}/{}/{}"),
            ("{}-{}",),
        )

    def _plan_partial(self) -> Finish:
        invoice = self._target(self._shared(), at_least=Decimal(40))

        def finish() -> Payment:
            balance = invoice.balance
            if balance >= 400 and self.rng.random() < 0.5:  # a round figure
                share = balance * Decimal(self.rng.randint(25, 75)) / 100
                amount = max(
                    Decimal(50), (share / 50).to_integral_value(ROUND_DOWN) * 50
                )
            else:
                share = Decimal(self.rng.randint(20, 90)) / 100
                amount = (balance * share).quantize(CENT, ROUND_DOWN)
            amount = min(amount, (balance * Decimal("0.90")).quantize(CENT))
            return self._paying([invoice], invoice.invno, amount, applied=amount)

        return finish

    def _plan_surcharge(self) -> Finish:
        invoice = self._target(self._shared())

        def finish() -> Payment:
            rate = Decimal(self.rng.randint(200, 300)) / 10_000
            amount = (invoice.balance * (1 + rate)).quantize(CENT, ROUND_HALF_UP)
            return self._paying([invoice], invoice.invno, amount)

        return finish

    # --- styles that rest on who paid (a customer each) ----------------------------------

    def _by_amount(
        self, identify: Callable[[Customer], dict], references: tuple[str, ...]
    ) -> Finish:
        """No usable reference, the payer identified by `identify`, the amount the
        balance of exactly one of its open invoices."""
        customer = self._exclusive()
        invoice = self._target(customer)
        return lambda: self._pay(
            customer,
            invoice.balance,
            ((invoice.invno, invoice.balance),),
            invoice_id=self.rng.choice(references),
            **identify(customer),
        )

    def _plan_no_reference(self) -> Finish:
        return self._by_amount(self._known, NO_REFERENCE)

    def _plan_payer_only(self) -> Finish:
        def identify(customer: Customer) -> dict:
            if self.rng.random() < 0.55:
                return {"billing_name": self._name_as_written(customer)}
            return {"email": self.rng.choice(customer.emails)}

        return self._by_amount(identify, NO_REFERENCE)

    def _name_as_written(self, customer: Customer) -> str:
        words = customer.name.split()
        bare = customer.name
        if words[-1].rstrip(".").upper() in LEGAL_WORDS:
            bare = " ".join(words[:-1])
        forms = [customer.name, customer.name.upper(), bare]
        if bare != customer.name:
            forms.append(f"{bare}, {words[-1]}")
        return self.rng.choice(forms)

    def _typo(self, invoice: Invoice, kinds: tuple[str, ...]) -> str:
        """A number one edit (of `kinds`) from `invoice`'s that names nothing in the
        ledger and is one edit from no other invoice of its customer ('' if none)."""
        number = invoice.invno
        others = [i.invno for i in invoice.customer.invoices if i is not invoice]
        options = []
        if "transposed" in kinds:
            options += [
                number[:i] + number[i + 1] + number[i] + number[i + 2 :]
                for i in range(len(number) - 1)
                if number[i] != number[i + 1]
            ]
        if "changed" in kinds:
            options += [
                number[:i] + d + number[i + 1 :]
                for i in range(len(number))
                for d in "0123456789"
                if d != number[i]
            ]
        valid = [
            t
            for t in options
            if not t.startswith("0")
            and t not in self.keys
            and not any(is_one_edit(t, other) for other in others)
        ]
        if not valid:
            return ""
        typo = self.rng.choice(valid)
        self.reserved.add(typo)
        return typo

    def _typo_of(self, invoice: Invoice, first: tuple[str, ...]) -> str:
        typo = self._typo(invoice, first) or self._typo(
            invoice, ("transposed", "changed")
        )
        if not typo:
            raise RuntimeError(f"no usable typo of invoice {invoice.invno}")
        return typo

    def _plan_typo(self) -> Finish:
        customer = self._exclusive()
        invoice = self._target(customer)

        def finish() -> Payment:
            kinds = ("transposed",) if self.rng.random() < 0.6 else ("changed",)
            return self._pay(
                customer,
                invoice.balance,
                ((invoice.invno, invoice.balance),),
                invoice_id=self._typo_of(invoice, kinds),
                **self._known(customer),
            )

        return finish

    # --- traps (label: review) ----------------------------------------------------------

    def _clear_amount(self, customer: Customer, near: Decimal | None = None) -> Decimal:
        """An amount no open invoice of the customer, nor any combination of up to
        MAX_COMBINATION of them, comes within TOLERANCE of; with `near`, 50-90 % or
        110-160 % of it when that is clear too."""
        balances = customer.open_balances()
        sums = [
            sum(combo, ZERO)
            for size in range(1, min(MAX_COMBINATION, len(balances)) + 1)
            for combo in combinations(balances, size)
        ]
        if near is not None:
            sums.append(near)
        while True:
            if near is not None:
                low, high = self.rng.randint(50, 90), self.rng.randint(110, 160)
                factor = Decimal(self.rng.choice((low, high)))
                amount = (near * factor / 100).quantize(CENT)
                near = None  # once: any clear amount will do after that
            else:
                amount = self._amount()
            if all(abs(amount - s) > s * TOLERANCE for s in sums):
                return amount

    def _plan_trap_other_customer(self) -> Finish:
        invoice = self._target(self._shared())
        payer = self._customer()
        self._background(
            payer,
            self.rng.randint(1, 5),
            self.rng.randint(0, 2),
            avoid=[invoice.balance],
        )

        def finish() -> Payment:
            known = self._known(payer, by_customer_id=0.65)
            form = "{}" if self.rng.random() < 0.7 else "INV-{}"
            return self._pay(
                payer,
                invoice.balance,
                None,
                invoice_id=form.format(invoice.invno),
                **known,
            )

        return finish

    def _plan_trap_equal_invoices(self) -> Finish:
        customer = self._exclusive((0, 4))
        balance = self._amount()
        while balance in customer.open_balances():
            balance = self._amount()
        self._invoice(customer, balance)
        self._invoice(customer, balance)
        return lambda: self._pay(
            customer,
            balance,
            None,
            invoice_id=self.rng.choice(NO_REFERENCE),
            **self._known(customer),
        )

    def _plan_trap_transposition(self) -> Finish:
        customer = self._exclusive()
        invoice = self._target(customer)
        return lambda: self._pay(
            customer,
            self._clear_amount(customer, near=invoice.balance),
            None,
            invoice_id=self._typo_of(invoice, ("transposed",)),
            **self._known(customer),
        )

    def _nothing(self) -> str:
        """A reference naming no invoice, order or PO, one edit from none of them."""
        rng = self.rng
        if rng.random() < 0.4:
            return rng.choice(("Statement", "Deposit", "Balance", "Payment on account"))
        while True:
            form = rng.choice(("Acct {}", "REF {}", "Order {}", "Job {}-B"))
            number = str(
                rng.randint(1000, 9999) if "Job" in form else rng.randint(70000, 89999)
            )
            if number not in self.keys and not any(
                n in self.keys for n in neighbours(number)
            ):
                self.reserved.update([number, *neighbours(number)])
                return form.format(number)

    def _plan_trap_names_nothing(self) -> Finish:
        customer = self._exclusive()
        return lambda: self._pay(
            customer,
            self._clear_amount(customer),
            None,
            invoice_id=self._nothing(),
            **self._known(customer),
        )

    def _plan_trap_conflicting_payer(self) -> Finish:
        customer = self._exclusive()
        invoice = self._target(customer)

        def finish() -> Payment:
            other = self.rng.choice(
                [
                    c
                    for c in self.customers
                    if c is not customer and invoice.balance not in c.open_balances()
                ]
            )
            return self._pay(
                customer,
                invoice.balance,
                None,
                invoice_id=self.rng.choice(NO_REFERENCE),
                customer_id=customer.custno,
                email=other.emails[0],
            )

        return finish

    # --- held-out styles --------------------------------------------------------------

    def _plan_ho_trailing_text(self) -> Finish:
        return self._named(
            ("{} thanks", "{} - thank you", "pmt for inv {}", "Payment for invoice {}")
        )

    def _plan_ho_glued_lower(self) -> Finish:
        return self._named(("inv#{}", "inv{}", "invoice#{}"))

    def _plan_ho_and_list(self) -> Finish:
        return self._several(("Invoices {} and {}",), ("Invoices {}, {} and {}",), ())

    def _plan_ho_to_range(self) -> Finish:
        block = self._block(self._shared(), self.rng.choice((2, 3)))

        def finish() -> Payment:
            form = self.rng.choice(("{} to {}", "{} thru {}"))
            return self._paying(block, form.format(block[0].invno, block[-1].invno))

        return finish

    def _plan_ho_full_width(self) -> Finish:
        invoice = self._target(self._shared())
        return lambda: self._paying(
            [invoice],
            self.rng.choice(("{}", "INV-{}")).format(full_width(invoice.invno)),
        )

    def _plan_ho_description_only(self) -> Finish:
        invoice = self._target(self._shared())

        def finish() -> Payment:
            payment = self._paying([invoice], "")
            form = self.rng.choice(("Payment for invoice {}", "Inv {}"))
            payment.fields["description"] = form.format(invoice.invno)
            return payment

        return finish

    def _plan_ho_email_case(self) -> Finish:
        def identify(customer: Customer) -> dict:
            local, _, domain = self.rng.choice(customer.emails).partition("@")
            name, _, tld = domain.partition(".")
            return {"email": f"{local.upper()}@{name.title()}.{tld.title()}"}

        return self._by_amount(identify, ("",))

    # --- blind styles -------------------------------------------------------------------
    # Written from how B2B payers fill in a card payment's reference, without reading
    # the matching code (issue 11's blind set).

    def _free_number(self, low: int, high: int) -> str:
        """A number naming nothing in the ledger and one edit from nothing in it,
        reserved so that no later number takes it (a payer's own reference)."""
        while True:
            number = str(self.rng.randint(low, high))
            near = [number, *neighbours(number)]
            if not any(n in self.keys or n in self.reserved for n in near):
                self.reserved.update(near)
                return number

    def _credit_memo(self, customer: Customer, against: Decimal) -> Invoice:
        """An open credit memo of the customer, well under `against`."""
        rng = self.rng
        rounds = [Decimal(n) for n in (25, 50, 75, 100, 150, 200, 250)]
        rounds = [n for n in rounds if n <= against / 2]
        if rounds and rng.random() < 0.4:
            amount = rng.choice(rounds)
        else:
            amount = (against * Decimal(rng.randint(5, 40)) / 100).quantize(CENT)
        credit = Invoice(customer=customer, balance=-amount, has_order=False)
        customer.invoices.append(credit)
        self.invoices.append(credit)
        self._units.append([credit])
        return credit

    def _plan_bl_account_number(self) -> Finish:
        invoice = self._target(self._shared())
        forms = (
            "Acct {c} Inv {n}",
            "{c} - {n}",
            "Cust# {c} / Inv# {n}",
            "{n} acct {c}",
            "Account {c} invoice {n}",
            "{c} {n}",
        )
        return lambda: self._paying(
            [invoice],
            self.rng.choice(forms).format(c=invoice.customer.custno, n=invoice.invno),
        )

    def _plan_bl_invoice_and_po(self) -> Finish:
        invoice = self._target(self._shared(), ponum=self.rng.random() < 0.7)
        forms = (
            "Inv {n} PO {p}",
            "INV#{n} PO#{p}",
            "PO {p} Inv {n}",
            "{n} / PO {p}",
            "Invoice {n}, PO {p}",
            "PO# {p} - invoice {n}",
        )

        def finish() -> Payment:
            po = invoice.ponum or self._free_number(3000, 9999)
            form = self.rng.choice(forms)
            payment = self._paying([invoice], form.format(n=invoice.invno, p=po))
            payment.fields["customer_reference_id"] = (
                po if self.rng.random() < 0.5 else ""
            )
            return payment

        return finish

    def _plan_bl_trailing_date(self) -> Finish:
        invoice = self._target(self._shared())
        forms = (
            "{n} {m}/{d}",
            "{n} {m}/{d}/{yy}",
            "Inv {n} paid {m}/{d}",
            "{n} - {m}/{d}/{yyyy}",
            "INV {n} {mm}-{dd}-{yyyy}",
            "{n} {mon} {d}",
        )
        months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
                  "Oct", "Nov", "Dec")  # fmt: skip

        def finish() -> Payment:
            month, day = self.rng.randint(1, 12), self.rng.randint(1, 28)
            year = self.rng.choice((2025, 2026))
            reference = self.rng.choice(forms).format(
                n=invoice.invno,
                m=month,
                d=day,
                mm=f"{month:02d}",
                dd=f"{day:02d}",
                yy=f"{year % 100:02d}",
                yyyy=year,
                mon=months[month - 1],
            )
            return self._paying([invoice], reference)

        return finish

    def _plan_bl_separators(self) -> Finish:
        return self._several(
            ("{}; {}", "{};{}", "#{} #{}", "{} + {}", "{} {}", "INV {} INV {}"),
            ("{}; {}; {}", "#{} #{} #{}", "{} {} {}", "{} + {} + {}"),
            (),
        )

    def _plan_bl_payer_reference(self) -> Finish:
        invoice = self._target(self._shared())
        forms = (
            "PMT {v:0>9} INV {n}",
            "Voucher {v} / Inv {n}",
            "Inv {n} (our ref {v})",
            "{n} - pymt ref {v}",
            "Remit {v}: inv {n}",
            "Batch {v} inv {n}",
        )

        def finish() -> Payment:
            voucher = self._free_number(100_000, 999_999)
            form = self.rng.choice(forms)
            return self._paying([invoice], form.format(v=voucher, n=invoice.invno))

        return finish

    def _plan_bl_less_credit(self) -> Finish:
        customer = self._shared()
        invoice = self._target(customer, at_least=Decimal(150))
        credit = self._credit_memo(customer, invoice.balance)
        forms = (
            "{n} less CM {c}",
            "Inv {n} less credit {c}",
            "{n} - credit memo {c}",
            "INV {n} minus CM#{c}",
            "{n} net of credit {c}",
        )

        def finish() -> Payment:
            net = invoice.balance + credit.balance
            form = self.rng.choice(forms)
            return self._paying(
                [invoice], form.format(n=invoice.invno, c=credit.invno), net, net
            )

        return finish

    def _slip(self, invoice: Invoice) -> str:
        """The invoice number with one digit dropped or doubled, naming nothing and
        one edit from no other invoice of the customer."""
        number = invoice.invno
        others = [i.invno for i in invoice.customer.invoices if i is not invoice]
        dropped = [number[:i] + number[i + 1 :] for i in range(len(number))]
        doubled = [number[: i + 1] + number[i:] for i in range(len(number))]
        kinds = [dropped, doubled]
        self.rng.shuffle(kinds)
        for options in kinds:
            valid = sorted(
                {
                    t
                    for t in options
                    if not t.startswith("0")
                    and t not in self.keys
                    and t not in self.reserved
                    and not any(is_one_edit(t, other) for other in others)
                }
            )
            if valid:
                slip = self.rng.choice(valid)
                self.reserved.add(slip)
                return slip
        raise RuntimeError(f"no usable slip of invoice {number}")

    def _plan_bl_dropped_doubled(self) -> Finish:
        customer = self._exclusive()
        invoice = self._target(customer)

        def finish() -> Payment:
            form = self.rng.choice(("{}", "{}", "INV {}", "Inv# {}"))
            return self._pay(
                customer,
                invoice.balance,
                ((invoice.invno, invoice.balance),),
                invoice_id=form.format(self._slip(invoice)),
                **self._known(customer),
            )

        return finish

    def _plan_bl_description_junk_id(self) -> Finish:
        invoice = self._target(self._shared())
        forms = (
            "Invoice #{n}",
            "INV{n}",
            "paying inv {n} thx",
            "{name} - invoice {n}",
            "Inv. {n} {name}",
            "for invoice no {n}",
        )

        def finish() -> Payment:
            payment = self._paying([invoice], self.rng.choice(JUNK_IDS))
            payment.fields["description"] = self.rng.choice(forms).format(
                n=invoice.invno, name=invoice.customer.name
            )
            return payment

        return finish

    def _name_variant(self, customer: Customer) -> str:
        """The customer's name as a billing form gets it, written differently from
        the ledger (and from the default mix's `payer_only` forms)."""
        rng = self.rng
        words = customer.name.split()
        last_word = words[-1]
        suffix = last_word.rstrip(".").upper()
        if suffix in LEGAL_WORDS:
            words = words[:-1]
        else:
            suffix = ""
        base = " ".join(words)
        writings = {
            "": ("LLC", "Inc.", ", Inc", ", LLC"),
            "INC": ("Incorporated", ", Inc.", "INC.", ", Inc"),
            "LLC": ("L.L.C.", ", L.L.C.", ", Llc", "Llc."),
            "CO": ("Company", ", Co.", "Co.,"),
            "COMPANY": ("Co.", ", Co"),
            "CORP": ("Corporation", ", Corp.", "Corp.,"),
            "LTD": ("Limited", ", Ltd."),
        }
        # The default mix's forms: as on file, upper case, without or with a comma
        # before its legal suffix.
        plain = {customer.name.upper(), base.upper(), f"{base}, {last_word}".upper()}
        for _ in range(100):
            name = base
            if "&" in name and rng.random() < 0.7:
                name = name.replace("&", "and")
            if "Street" in name and rng.random() < 0.7:
                name = name.replace("Street", "St")
            if rng.random() < 0.75:
                written = rng.choice(writings[suffix])
                name += written if written.startswith(",") else f" {written}"
            elif suffix:
                name += f" {last_word}"
            if rng.random() < 0.2:
                name = f"The {name}"
            if rng.random() < 0.2:
                name += rng.choice(
                    (" - Accounts Payable", " AP Dept", " - Accts Payable")
                )
            if rng.random() < 0.4:
                name = name.upper()
            if name.upper() not in plain:
                return name
        raise RuntimeError(f"no variant of {customer.name!r}")

    def _plan_bl_name_variant(self) -> Finish:
        return self._by_amount(
            lambda customer: {"billing_name": self._name_variant(customer)},
            NO_REFERENCE,
        )

    def _plan_bl_other_mailbox(self) -> Finish:
        def identify(customer: Customer) -> dict:
            first, last = self._person()
            local = self.rng.choice(
                (f"{first}.{last}", f"{first[0]}{last}", *OTHER_MAILBOXES)
            )
            return {"email": f"{local.lower()}@{customer.domain}"}

        return self._by_amount(identify, NO_REFERENCE)

    def _plan_bl_trap_amount_other_invoice(self) -> Finish:
        customer = self._exclusive((0, 3))
        named = self._target(customer, at_least=Decimal(300))
        others = []
        for _ in range(2):  # two, so one is surely not one edit from the named one
            balance = self._amount()
            while (
                balance in customer.open_balances()
                or balance >= named.balance * Decimal("0.9")
                or balance == balance.to_integral_value()
            ):
                balance = self._amount()
            others.append(self._invoice(customer, balance))

        def finish() -> Payment:
            apart = [i for i in others if not is_one_edit(i.invno, named.invno)]
            if not apart:
                raise RuntimeError(f"invoice {named.invno}: every other is one edit")
            other = apart[0]
            form = self.rng.choice(("{}", "INV {}", "Invoice #{}"))
            return self._pay(
                customer,
                other.balance,
                None,
                invoice_id=form.format(named.invno),
                **self._known(customer),
            )

        return finish

    def _plan_bl_trap_amount_only(self) -> Finish:
        customer = self._exclusive()
        invoice = self._target(customer)
        card = f"{self.rng.randint(0, 9999):04d}"
        while card in self.last4s:
            card = f"{self.rng.randint(0, 9999):04d}"
        self.last4s.add(card)  # a card no customer of the ledger has used

        def finish() -> Payment:
            first, last = self._person()
            local = self.rng.choice(
                (f"{first}.{last}", f"{first}{last}{self.rng.randint(1, 99)}")
            )
            payment = self._pay(
                customer,
                invoice.balance,
                None,
                invoice_id=self.rng.choice(NO_REFERENCE),
                email=f"{local.lower()}@{self.rng.choice(FREE_MAIL)}",
                billing_name=f"{first} {last}",
            )
            payment.fields["credit_card"]["masked_number"] = "*" * 12 + card
            return payment

        return finish

    # --- checks ------------------------------------------------------------------------

    def check(self) -> list[str]:
        """The labels' invariants, checked again on the finished world (not trusting
        the planning): every problem found, as text."""
        problems = []
        invnos = Counter(i.invno for i in self.invoices)
        problems += [f"invoice {n} twice" for n, k in invnos.items() if k > 1]
        problems += [
            f"invoice {n} is a demo number" for n in invnos if n in DEMO_NUMBERS
        ]
        owners: dict[str, Invoice] = {i.invno: i for i in self.invoices}
        targeted: Counter = Counter()
        for p in self.payments:
            where = f"{p.transaction_id} ({p.style})"
            if p.expected is None:
                continue
            for invno, amount in p.expected:
                targeted[invno] += 1
                invoice = owners.get(invno)
                if invoice is None or invoice.balance <= 0:
                    problems.append(f"{where}: {invno} is not an open invoice")
                elif invoice.customer is not p.payer:
                    problems.append(f"{where}: {invno} is not the payer's")
                elif amount > invoice.balance or amount <= 0:
                    problems.append(f"{where}: {money(amount)} on {invno}")
            applied = sum((a for _, a in p.expected), ZERO)
            if p.amount < applied:
                problems.append(f"{where}: pays {p.amount}, applies {applied}")
            if p.style in ("no_reference", "payer_only", "ho_email_case"):
                (invno, _), balance = p.expected[0], p.amount
                if p.payer.open_balances().count(balance) != 1:
                    problems.append(f"{where}: {balance} is not one open invoice")
        problems += [
            f"invoice {n} is paid by {k} payments" for n, k in targeted.items() if k > 1
        ]
        problems += self._check_payers() + self._check_traps() + self._check_blind()
        last4 = Counter(c.card_last4 for c in self.customers)
        problems += [f"card {n} on {k} customers" for n, k in last4.items() if k > 1]
        emails = Counter(e for c in self.customers for e in c.emails)
        problems += [f"e-mail {e} on {k} customers" for e, k in emails.items() if k > 1]
        return problems

    def _owners(self) -> tuple[dict, dict, dict]:
        by_custno = {c.custno: c for c in self.customers}
        by_email = {e.lower(): c for c in self.customers for e in c.emails}
        by_name = {name_key(c.name): c for c in self.customers}
        return by_custno, by_email, by_name

    def _check_payers(self) -> list[str]:
        """A genuine payment's payer details name its own customer or nobody."""
        by_custno, by_email, by_name = self._owners()
        problems = []
        for p in self.payments:
            if p.expected is None:
                continue
            f = p.fields
            named = {
                by_custno.get(f["customer_id"]),
                by_email.get(f["receipt_emailed_to"].lower()),
                by_name.get(name_key(f["billing_address"]["name"])),
            } - {None}
            if named - {p.payer}:
                problems.append(
                    f"{p.transaction_id} ({p.style}): payer details conflict"
                )
            if (
                p.style
                in (
                    "typo",
                    "no_reference",
                    "payer_only",
                    "ho_email_case",
                    "bl_dropped_doubled",
                )
                and not named
            ):
                problems.append(f"{p.transaction_id} ({p.style}): payer not known")
        return problems

    def _check_traps(self) -> list[str]:
        by_custno, by_email, _ = self._owners()
        invoices = {i.invno: i for i in self.invoices}
        problems = []
        for p in self.payments:
            f, where = p.fields, f"{p.transaction_id} ({p.style})"
            reference = number_key(f["invoice_id"])
            own = [i for i in p.payer.invoices if i.balance > 0]
            if p.style in ("typo", "trap_transposition"):
                close = [i for i in p.payer.invoices if is_one_edit(reference, i.invno)]
                if reference in self.keys or len(close) != 1:
                    problems.append(
                        f"{where}: {reference} names something or is ambiguous"
                    )
                elif p.style == "typo" and (close[0].invno, p.amount) != p.expected[0]:
                    problems.append(f"{where}: the typo is not of the paid invoice")
                elif p.style == "trap_transposition" and close[0].balance == p.amount:
                    problems.append(f"{where}: the amount is the near invoice's")
            if p.style == "trap_equal_invoices" and (
                [i.balance for i in own].count(p.amount) != 2
            ):
                problems.append(f"{where}: not two open invoices of the amount")
            if p.style == "trap_other_customer":
                owner = invoices[reference.removeprefix("INV")].customer
                if owner is p.payer or p.amount in p.payer.open_balances():
                    problems.append(
                        f"{where}: the payer owns the invoice or the amount"
                    )
            if p.style == "trap_conflicting_payer":
                other = by_email[f["receipt_emailed_to"].lower()]
                if by_custno[f["customer_id"]] is not p.payer or other is p.payer:
                    problems.append(f"{where}: the payer details do not conflict")
            if p.style == "trap_names_nothing":
                numbers = digit_runs(f["invoice_id"])
                if any(n in self.keys for n in numbers):
                    problems.append(f"{where}: the reference names something")
                balances = [i.balance for i in own]
                for size in range(1, min(MAX_COMBINATION, len(balances)) + 1):
                    for combo in combinations(balances, size):
                        total = sum(combo, ZERO)
                        if abs(p.amount - total) <= total * TOLERANCE:
                            problems.append(f"{where}: {total} fits the amount")
        return problems

    def _check_blind(self) -> list[str]:
        """The blind styles' labels, checked on the finished world: a genuine one's
        reference names exactly its invoices (and a credit memo it nets), its other
        numbers name nothing, its payer details name only its customer; a trap's
        doubt is really there."""
        by_custno, by_email, _ = self._owners()
        numbers = {i.invno: i for i in self.invoices}
        numbers |= {i.ornum: i for i in self.invoices if i.ornum}
        names = Counter(loose_name_key(n) for n in DEMO_NAMES)
        names.update(loose_name_key(c.name) for c in self.customers)
        domains = Counter(c.domain for c in self.customers)
        domains.update(f"{c.lower()}.example" for c in DEMO_CUSTNOS)
        cards = Counter(c.card_last4 for c in self.customers)
        problems = []
        for p in self.payments:
            if p.group != "blind":
                continue
            f, where = p.fields, f"{p.transaction_id} ({p.style})"
            runs = digit_runs(
                " ".join(
                    (f["invoice_id"], f["description"], f["customer_reference_id"])
                )
            )
            if any(r in DEMO_NUMBERS for r in runs):
                problems.append(f"{where}: names a demo invoice or order")
            named = {numbers[r] for r in runs if r in numbers}
            credits = {i for i in named if i.is_credit}
            expected = {numbers[invno] for invno, _ in p.expected or ()}
            email = f["receipt_emailed_to"].lower()
            payer_named = (
                by_custno.get(f["customer_id"]) is p.payer
                or by_email.get(email) is p.payer
            )
            if p.expected is not None:
                if p.amount != sum((a for _, a in p.expected), ZERO):
                    problems.append(f"{where}: the amount is not what it applies")
                wanted = expected if p.style in BLIND_REFERENCES else set()
                if named - credits != wanted:
                    problems.append(
                        f"{where}: names {sorted(i.invno for i in named)}, "
                        f"pays {sorted(i.invno for i in expected)}"
                    )
            if p.style == "bl_account_number" and p.payer.custno not in f["invoice_id"]:
                problems.append(f"{where}: no account number")
            if p.style in ("bl_invoice_and_po", "bl_payer_reference"):
                own = {i.invno for i in expected} | {
                    r for i in expected for r in digit_runs(i.ponum)
                }
                strangers = [r for r in digit_runs(f["invoice_id"]) if r not in own]
                if any(r in self.keys for r in strangers) or (
                    p.style == "bl_payer_reference" and not strangers
                ):
                    problems.append(f"{where}: its other number names something")
            if p.style == "bl_less_credit":
                (invoice,) = expected
                if (
                    len(credits) != 1
                    or next(iter(credits)).customer is not p.payer
                    or p.amount != invoice.balance + next(iter(credits)).balance
                ):
                    problems.append(f"{where}: not the invoice less its credit memo")
            if p.style == "bl_dropped_doubled":
                (invoice,) = expected
                (slip,) = runs or [""]
                close = [i for i in p.payer.invoices if is_one_edit(slip, i.invno)]
                number = invoice.invno
                slips = {number[:i] + number[i + 1 :] for i in range(len(number))}
                slips |= {number[: i + 1] + number[i:] for i in range(len(number))}
                if slip in self.keys or slip not in slips or close != [invoice]:
                    problems.append(f"{where}: {slip!r} is not a clean slip")
                if p.amount != invoice.balance or not payer_named:
                    problems.append(f"{where}: amount or payer not certain")
            if p.style == "bl_name_variant":
                key = loose_name_key(f["billing_address"]["name"])
                if key != loose_name_key(p.payer.name) or names[key] != 1:
                    problems.append(f"{where}: the name is not only the payer's")
                if f["customer_id"] or email:
                    problems.append(f"{where}: other payer details")
            if p.style == "bl_other_mailbox":
                domain = email.partition("@")[2]
                if (
                    domain != p.payer.domain
                    or domains[domain] != 1
                    or email in by_email
                ):
                    problems.append(
                        f"{where}: the mailbox is not a new one of the payer's"
                    )
                if f["customer_id"]:
                    problems.append(f"{where}: other payer details")
            if (
                p.style in ("bl_name_variant", "bl_other_mailbox")
                and p.payer.open_balances().count(p.amount) != 1
            ):
                problems.append(f"{where}: {p.amount} is not one open invoice")
            if p.style == "bl_trap_amount_other_invoice":
                own = [i for i in p.payer.invoices if i.balance > 0]
                other = [i for i in own if i.balance == p.amount and i not in named]
                if (
                    len(named) != 1
                    or not named <= set(own)
                    or len(other) != 1
                    or p.amount >= next(iter(named)).balance * Decimal("0.9")
                    or is_one_edit(other[0].invno, next(iter(named)).invno)
                    or not payer_named
                ):
                    problems.append(f"{where}: the reference and amount do not clash")
            if p.style == "bl_trap_amount_only":
                domain = email.partition("@")[2]
                card = f["credit_card"]["masked_number"][-4:]
                if (
                    named
                    or f["customer_id"]
                    or domain not in FREE_MAIL
                    or domains[domain]
                    or email in by_email
                    or names[loose_name_key(f["billing_address"]["name"])]
                    or cards[card]
                    or p.amount not in p.payer.open_balances()
                ):
                    problems.append(f"{where}: something names the payer")
        return problems


# Blind styles whose payments name their invoice(s) exactly.
BLIND_REFERENCES = frozenset(
    {
        "bl_account_number",
        "bl_invoice_and_po",
        "bl_trailing_date",
        "bl_separators",
        "bl_payer_reference",
        "bl_less_credit",
        "bl_description_junk_id",
    }
)
# Styles whose payments name their invoice: they share customers.
SHARED_STYLES = frozenset(
    {
        "exact",
        "prefix",
        "leading_zeros",
        "multiple",
        "po_number",
        "order_number",
        "partial",
        "surcharge",
        "trap_other_customer",  # the invoice's owner; the payer has its own
        "ho_trailing_text",
        "ho_glued_lower",
        "ho_and_list",
        "ho_to_range",
        "ho_full_width",
        "ho_description_only",
        *BLIND_REFERENCES,
    }
)


# --- one run (a child process per mode) ----------------------------------------------------


def seed_world(world: World) -> None:
    """Write the world's customers and invoices into the Sage Pro sandbox."""
    import datetime

    from django.db import transaction

    from integrations.sandbox.sagepro import seed as sandbox
    from integrations.sandbox.sagepro.models import ArMast

    existing = {
        number_key(v)
        for row in ArMast.objects.values_list("invno", "ornum", "ponum")
        for v in row
        if v.strip()
    }
    clash = existing & {number_key(i.invno) for i in world.invoices}
    if clash or not existing <= DEMO_NUMBERS:
        raise RuntimeError(
            "the sandbox's seed no longer matches DEMO_NUMBERS in bench/"
            f"cash_application.py (e.g. {sorted(existing - DEMO_NUMBERS)[:5]}); "
            "update it so the labels stay right"
        )
    today = sandbox.today()
    done = [0]
    ticker = harness.Ticker(
        5.0, lambda: f"seeded {done[0]}/{len(world.invoices)} invoices"
    )
    with transaction.atomic():
        for c in world.customers:
            city, state, zip_code = c.place
            sandbox.seed_customer(
                c.custno,
                c.name,
                email="; ".join(c.emails),
                contact="Accounts Payable",
                city=city,
                state=state,
                zip=zip_code,
                country="USA",
                pterms="Net 30",
                aracct="1200-00",
            )
        for invoice in sorted(world.invoices, key=lambda i: int(i.invno)):
            sandbox.seed_invoice(
                invoice.customer.custno,
                invoice.invamt,
                invoice.invno,
                invdte=today - datetime.timedelta(days=invoice.age_days),
                paidamt=invoice.paid,
                artype="C" if invoice.is_credit else "",
                ornum=invoice.ornum,
                ponum=invoice.ponum,
            )
            done[0] += 1
            ticker.tick()


def configure(mode: str) -> None:
    """`legacy`: the one rule the portal matched with before issue 11; `standard`: none."""
    from integrations.models import Connection
    from mappings.models import MatchingRule

    paytrace = Connection.objects.get(slug=harness.PAYTRACE_SLUG)
    MatchingRule.objects.filter(connection=paytrace).delete()
    if mode == "legacy":
        MatchingRule.objects.create(connection=paytrace, **LEGACY_RULE)


def build_deliveries(world: World) -> list[Delivery]:
    from django.utils import timezone

    from tests.webhooks import event_body, paytrace_record, paytrace_time

    created = paytrace_time(timezone.now())
    out = []
    for p in world.payments:
        record = paytrace_record(
            transaction_id=p.transaction_id,
            amount=p.amount,
            created={"through": "API", "at": created, "by": "apiuser"},
            **json.loads(json.dumps(p.fields)),
        )
        body = event_body("transaction.approved", record).encode()
        out.append(Delivery(body=body, msg_id=f"msg_cash_{p.transaction_id}"))
    return out


def run_of(world: World):  # noqa: ANN201 - a bench.pipeline.Run
    from bench.pipeline import Run

    return Run(FIRST_TXN, len(world.payments))


def unsettled(world: World, accepted: int) -> tuple[int, int]:
    """(accepted events not yet processed, receipt postings still on their way)."""
    from integrations.models import Event, Posting

    run = run_of(world)
    done = run.events().filter(state__in=[Event.State.PROCESSED, Event.State.DEAD])
    moving = run.postings().filter(
        state__in=[
            Posting.State.PENDING,
            Posting.State.IN_PROGRESS,
            Posting.State.FAILED,
        ]
    )
    return max(0, accepted - done.count()), moving.count()


def wait_settled(
    bench: harness.Bench, world: World, accepted: int, limit: float
) -> bool:
    def line() -> str:
        events, postings = unsettled(world, accepted)
        return f"{events} events to process, {postings} postings on their way"

    ticker = harness.Ticker(5.0, line)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        bench.check_children()
        if unsettled(world, accepted) == (0, 0):
            return True
        ticker.tick()
        time.sleep(0.5)
    return False


def collect(world: World) -> list[dict]:
    """Each payment's outcome, judged against its label.

    What the posting says it applied is checked against what the sandbox's ledger
    holds for its idempotency key (`ledger`): a false apply on either side counts."""
    from integrations.models import Connection, PaymentTransaction, Posting
    from integrations.sandbox.sagepro.models import CashReceiptLine

    paytrace = Connection.objects.get(slug=harness.PAYTRACE_SLUG)
    events = dict(run_of(world).events().values_list("transaction_id", "state"))
    ledger: dict[str, list[tuple[str, Decimal]]] = defaultdict(list)
    for key, invno, amount in CashReceiptLine.objects.filter(
        receipt__deleted=False
    ).values_list("receipt__idemkey", "invno", "amount"):
        ledger[key].append((invno.strip().upper(), amount))
    txns = {
        t.transaction_id: t
        for t in PaymentTransaction.objects.filter(
            connection=paytrace,
            transaction_id__in=[str(p.transaction_id) for p in world.payments],
        ).prefetch_related("review_items", "postings")
    }
    out = []
    for p in world.payments:
        txn = txns.get(str(p.transaction_id))
        row = p.as_json()
        row.update(
            event=events.get(str(p.transaction_id), ""),
            outcome="missing",
            applied=[],
            posting="",
            decided_automatically=False,
            review=[],
            reason="",
            false=False,
        )
        if txn is None:
            out.append(row)
            continue
        posting = next(
            (x for x in txn.postings.all() if x.kind == Posting.Kind.CASH_RECEIPT),
            None,
        )
        applied = []
        if posting is not None:
            applied = [
                (str(a.get("invno", "")).strip().upper(), Decimal(str(a.get("amount"))))
                for a in (posting.payload or {}).get("applications") or []
            ]
        items = [(i.kind, i.reason) for i in txn.review_items.all()]
        explanation = getattr(txn, "match_explanation", None) or {}
        expected = (
            None
            if p.expected is None
            else sorted((invno.upper(), amount) for invno, amount in p.expected)
        )
        booked = sorted(ledger.get(posting.idempotency_key, [])) if posting else []
        false = any(
            lines and (expected is None or sorted(lines) != expected)
            for lines in (applied, booked)
        )
        posted = posting is not None and posting.state == Posting.State.POSTED
        if false:
            outcome = "false"
        elif posted and applied and not items:
            outcome = "auto"
        else:
            outcome = "review"
        row.update(
            outcome=outcome,
            applied=[[invno, money(amount)] for invno, amount in applied],
            posting=posting.state if posting is not None else "",
            decided_automatically=bool(
                getattr(posting, "decided_automatically", False)
            ),
            review=[[kind, reason[:300]] for kind, reason in items],
            reason=str(explanation.get("reason", ""))[:300]
            or (items[0][1][:300] if items else ""),
            false=false,
            ledger=[[invno, money(amount)] for invno, amount in booked],
            ledger_differs=posted and booked != sorted(applied),
        )
        out.append(row)
    return out


def run_child(args) -> int:  # noqa: ANN001
    """One mode on one fresh database; the outcomes go to `args.results` as JSON."""
    began = time.monotonic()
    world = World(args.seed).generate(
        args.payments, held_out_count(args), blind_count(args)
    )
    problems = world.check()
    if problems:
        raise SystemExit("the generator broke its own labels:\n" + "\n".join(problems))
    bench = harness.Bench(
        args.db, env_overrides=harness.env_overrides(args), keep=args.keep
    )
    with bench:
        bench.prepare()
        from django.conf import settings
        from django.db import connections

        from bench import pipeline
        from integrations import mirror
        from integrations.models import Connection

        say(
            f"[{args.mode}] seeding {len(world.customers)} customers and "
            f"{len(world.invoices)} invoices into the Sage Pro sandbox…"
        )
        seed_world(world)
        configure(args.mode)
        connections.close_all()
        bench.start_web()
        sage_conn = Connection.objects.get(kind=Connection.Kind.SAGEPRO)
        synced = mirror.sync(sage_conn)
        say(f"[{args.mode}] mirror {synced.describe()}")
        connections.close_all()
        pipeline.start_cluster(bench)
        deliveries = build_deliveries(world)
        harness.sign_all(deliveries, settings.DEMO_WEBHOOK_SECRET)
        say(f"[{args.mode}] sending {len(deliveries)} payments through the webhook…")
        sent = harness.post_all(bench.port, WEBHOOK_PATH, deliveries, 4, "webhook")
        say(f"  {sent.describe()}")
        accepted = sum(n for status, n in sent.statuses.items() if 200 <= status < 300)
        settled = wait_settled(bench, world, accepted, args.time_limit)
        bench.stop_cluster()
        rows = collect(world)
    result = {
        "mode": args.mode,
        "db": args.db,
        "seconds": time.monotonic() - began,
        "settled": settled,
        "sent_failed": sent.failed,
        "payments": rows,
    }
    Path(args.results).write_text(json.dumps(result))
    return 0


# --- the parent: both modes, then the report ---------------------------------------------


def held_out_count(args) -> int:  # noqa: ANN001
    if not args.held_out:
        return 0
    return args.held_out_payments or max(1, args.payments // 4)


def blind_count(args) -> int:  # noqa: ANN001
    if not args.blind:
        return 0
    return args.blind_payments or max(1, args.payments // 4)


def run_modes(args) -> int:  # noqa: ANN001
    began = time.monotonic()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        raise SystemExit(f"--modes {args.modes!r}: a list of {', '.join(MODES)}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="portal-cash-") as tmp:
        for mode in modes:
            say(f"\n===== {mode} on {args.db} =====")
            out = Path(tmp) / f"{mode}.json"
            command = [
                sys.executable,
                "-m",
                "bench.cash_application",
                "--db",
                args.db,
                "--mode",
                mode,
                "--results",
                str(out),
                "--payments",
                str(args.payments),
                "--seed",
                str(args.seed),
                "--time-limit",
                str(args.time_limit),
                *(["--held-out"] if args.held_out else []),
                *(
                    ["--held-out-payments", str(args.held_out_payments)]
                    if args.held_out_payments
                    else []
                ),
                *(["--blind"] if args.blind else []),
                *(
                    ["--blind-payments", str(args.blind_payments)]
                    if args.blind_payments
                    else []
                ),
                *(["--keep"] if args.keep else []),
                *[f"--env={item}" for item in args.env],
            ]
            code = subprocess.run(command, cwd=ROOT).returncode
            if code or not out.exists():
                say(f"{mode}: the run failed (exit {code})")
                results[mode] = None
                continue
            results[mode] = json.loads(out.read_text())
    return report(args, results, time.monotonic() - began)


def tally(rows: list[dict]) -> dict[str, Counter]:
    per_style: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        per_style[row["style"]]["payments"] += 1
        per_style[row["style"]][row["outcome"]] += 1
    return per_style


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "n/a"


def report(args, results: dict[str, dict | None], seconds: float) -> int:  # noqa: ANN001
    ran = {mode: r for mode, r in results.items() if r is not None}
    if not ran:
        say("No run finished.")
        return 1
    any_rows = next(iter(ran.values()))["payments"]
    groups = [("mix", MIX)]
    groups += [("held-out", HELD_OUT)] if args.held_out else []
    groups += [("blind", BLIND)] if args.blind else []
    say(
        f"\nCash application on {args.db}: seed {args.seed}, "
        f"{sum(r['group'] == 'mix' for r in any_rows)} payments in the default mix"
        + (
            f", {sum(r['group'] == 'held-out' for r in any_rows)} held-out"
            if args.held_out
            else ""
        )
        + (
            f", {sum(r['group'] == 'blind' for r in any_rows)} blind"
            if args.blind
            else ""
        )
    )
    tallies = {
        mode: {
            g: tally([x for x in r["payments"] if x["group"] == g]) for g, _ in groups
        }
        for mode, r in ran.items()
    }
    headers = ["style", "payments"]
    for mode in ran:
        headers += [f"{mode} auto", f"{mode} reviewed", f"{mode} false"]
    failed = False
    for group, styles in groups:
        rows = []
        totals = {mode: {"genuine": Counter(), "traps": Counter()} for mode in ran}
        for style in styles:
            count = tallies[next(iter(ran))][group][style.name]["payments"]
            row = [style.name, count]
            for mode in ran:
                t = tallies[mode][group][style.name]
                reviewed = t["review"] + t["missing"]
                row += [t["auto"], reviewed, t["false"]]
                part = "traps" if style.trap else "genuine"
                totals[mode][part].update(t)
            rows.append(row)
        for part in ("genuine", "traps"):
            count = totals[next(iter(ran))][part]["payments"]
            if not count:
                continue
            row = [f"= {part}", count]
            for mode in ran:
                t = totals[mode][part]
                row += [
                    f"{t['auto']} ({pct(t['auto'], count)})",
                    t["review"] + t["missing"],
                    t["false"],
                ]
            rows.append(row)
        title = {
            "mix": "Default mix",
            "held-out": "HELD-OUT styles (never tuned on)",
            "blind": "BLIND styles (written without reading the matching code)",
        }[group]
        say(f"\n{title}: auto-posted correctly / reviewed / false applies")
        say(harness.table(headers, rows))
        for mode in ran:
            genuine = totals[mode]["genuine"]
            if genuine["payments"] and mode == "standard":
                share = genuine["auto"] / genuine["payments"]
                say(
                    harness.verdict(
                        f"{mode}, {group}: genuine auto-posted share", share, GOAL
                    )
                )
    for mode, r in ran.items():
        rows = r["payments"]
        falses = [x for x in rows if x["outcome"] == "false"]
        missing = sum(x["outcome"] == "missing" for x in rows)
        dead = [x for x in rows if x.get("event") == "dead"]
        differs = [x for x in rows if x.get("ledger_differs")]
        unmarked = sum(
            x["outcome"] == "auto" and not x["decided_automatically"] for x in rows
        )
        say(
            f"\n{mode}: {len(falses)} false applies; run {r['seconds']:.0f} s"
            + ("" if r["settled"] else "; DID NOT SETTLE in the time limit")
            + (f"; {missing} payments never became transactions" if missing else "")
            + (
                f"; {len(dead)} events could not be processed (dead: a failure, "
                "not a decision)"
                if dead
                else ""
            )
            + (f"; {r['sent_failed']} webhooks refused" if r["sent_failed"] else "")
            + (
                f"; {unmarked} auto-posted receipts not marked decided_automatically"
                if unmarked
                else ""
            )
            + (
                f"; {len(differs)} posted receipts whose Sage Pro lines differ from "
                "the posting's payload"
                if differs
                else ""
            )
        )
        # The legacy run is the "before": its false applies are a finding, not a failure.
        failed |= not r["settled"] or bool(r["sent_failed"]) or bool(missing)
        failed |= mode == "standard" and bool(falses)
        for x in falses:
            say(f"  FALSE APPLY {describe_row(x)}")
        for x in dead[: None if args.verbose else 5]:
            say(f"  DEAD EVENT {describe_row(x)}")
        if args.verbose:
            for x in rows:
                if x["outcome"] != "auto" and x["expected"] is not None:
                    say(f"  reviewed {describe_row(x)}")
    failed |= len(ran) < len(results)
    say(f"\nTotal runtime {seconds:.0f} s")
    return 1 if failed else 0


def describe_row(x: dict) -> str:
    f = x["fields"]
    expected = (
        "review"
        if x["expected"] is None
        else " + ".join(f"{i} {a}" for i, a in x["expected"])
    )
    applied = " + ".join(f"{i} {a}" for i, a in x["applied"]) or "nothing"
    return (
        f"{x['transaction_id']} [{x['style']}] ref {f['invoice_id']!r} "
        f"po {f['customer_reference_id']!r} cust {f['customer_id']!r} "
        f"amount {x['amount']}: expected {expected}, applied {applied} "
        f"({x['posting'] or 'no posting'}); {x['reason'][:160]}"
    )


def show(args) -> int:  # noqa: ANN001
    world = World(args.seed).generate(
        args.payments, held_out_count(args), blind_count(args)
    )
    problems = world.check()
    say(
        f"{len(world.payments)} payments, {len(world.customers)} customers, "
        f"{len(world.invoices)} invoices (invoice numbers "
        f"{FIRST_INVNO}–{world.next_invno - 1}); label problems: {len(problems)}"
    )
    for problem in problems:
        say(f"  PROBLEM {problem}")
    seen: Counter = Counter()
    counts = Counter(p.style for p in world.payments)
    for style in [
        *MIX,
        *(HELD_OUT if args.held_out else ()),
        *(BLIND if args.blind else ()),
    ]:
        say(f"\n{style.name} ({counts[style.name]})")
        for p in world.payments:
            if p.style == style.name and seen[style.name] < args.show:
                seen[style.name] += 1
                say(f"  {p.transaction_id}: {p.describe()}")
    if args.dump:
        Path(args.dump).write_text(
            json.dumps([p.as_json() for p in world.payments], indent=1)
        )
        say(f"\nwrote {len(world.payments)} labelled payments to {args.dump}")
    return 1 if problems else 0


def main() -> int:
    parser = harness.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=600)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--held-out",
        action="store_true",
        help="Also run the held-out styles (never tuned on), reported apart.",
    )
    parser.add_argument(
        "--held-out-payments",
        type=int,
        default=0,
        help="How many held-out payments (default: a quarter of --payments).",
    )
    parser.add_argument(
        "--blind",
        action="store_true",
        help="Also run the blind styles (written without reading the matching "
        "code), reported apart.",
    )
    parser.add_argument(
        "--blind-payments",
        type=int,
        default=0,
        help="How many blind payments (default: a quarter of --payments).",
    )
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help="Which matching configurations to run, in turn (legacy,standard).",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=600.0,
        help="Max seconds to wait for a run's payments to settle.",
    )
    parser.add_argument("--verbose", action="store_true", help="List every miss.")
    parser.add_argument(
        "--show",
        type=int,
        default=None,
        metavar="N",
        help="Print N generated payments per style and stop (no database).",
    )
    parser.add_argument("--dump", help="With --show: write every payment as JSON.")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.payments < 1:
        raise SystemExit("--payments must be at least 1")
    if args.show is not None or args.dump:
        args.show = args.show or 0
        return show(args)
    if args.mode:
        if args.db == "both" or not args.results:
            raise SystemExit("--mode is internal: it needs --db sqlite|postgres")
        return run_child(args)
    if args.db == "both":
        return harness.run_per_database("bench.cash_application", args, sys.argv[1:])
    return run_modes(args)


if __name__ == "__main__":
    sys.exit(main())
