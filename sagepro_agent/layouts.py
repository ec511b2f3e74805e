"""The canonical Sage Pro table layouts the agent works with.

Logical table names map to Sage Pro's physical tables (`ARMAST01` for company 01...).
Field names and widths follow the sandbox (docs/sagepro-gateway.md section 6) and the
reference (`sage-pro.md`); a real site's layout is discovered with
`python -m sagepro_agent schema` and may rename tables and fields in its site mapping.
The receipt header and line tables (`ARCASH`, `ARCAPP`) are UNVERIFIED names: Sage Pro's
own receipt tables are to be confirmed with `snapshot`/`diff` on a test company.

`TABLES[name] = Layout(physical, columns, tags)`:
- `physical` is the file name template (`{co}` = the 2-character company id);
- `columns` are `(NAME, "T (len[, dec])")` in dbflib's notation;
- `tags` are the structural CDX tags `{TAG: key expression}` the fixture store builds and
  the watchdog checks; the core looks rows up by these fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from sagepro_agent.store.base import FieldSpec

AUDIT = [("ADDUSER", "C (4)"), ("ADDDATE", "D"), ("ADDTIME", "C (8)")]
OBJLOCK = [
    ("LCKSTAT", "C (1)"),
    ("LCKUSER", "C (4)"),
    ("LCKDATE", "D"),
    ("LCKTIME", "C (8)"),
]

# Key widths (contract section 2).
CUSTNO_WIDTH = 6
INVNO_WIDTH = 10
RECEIPT_NO_WIDTH = 10
GLACNT_WIDTH = 24
ORNUM_WIDTH = 10
PONUM_WIDTH = 20
REFERENCE_WIDTH = 40
METHOD_WIDTH = 10


@dataclass(frozen=True)
class Layout:
    physical: str
    columns: tuple[tuple[str, str], ...]
    tags: tuple[tuple[str, str], ...]
    per_company: bool = True

    def fields(self) -> dict[str, FieldSpec]:
        return {name: parse_spec(name, spec) for name, spec in self.columns}


def parse_spec(name: str, spec: str) -> FieldSpec:
    """`("AMOUNT", "N (14, 2)")` -> FieldSpec("AMOUNT", "N", 14, 2)."""
    kind = spec.strip()[0].upper()
    inner = spec[spec.find("(") + 1 : spec.rfind(")")] if "(" in spec else ""
    parts = [int(p) for p in inner.replace(" ", "").split(",") if p]
    length = parts[0] if parts else 0
    decimals = parts[1] if len(parts) > 1 else 0
    return FieldSpec(name.upper(), kind, length, decimals)


def _layout(physical, columns, tags, per_company=True) -> Layout:
    return Layout(physical, tuple(columns), tuple(tags.items()), per_company)


TABLES: dict[str, Layout] = {
    "company": _layout(
        "SYCCOMP",
        [
            ("COMPID", "C (2)"),
            ("COMPNAME", "C (35)"),
            ("CURYR", "C (4)"),
            ("CURPRD", "C (2)"),
        ],
        {"COMPID": "COMPID"},
        per_company=False,
    ),
    "periods": _layout(
        "SYCDFIS",
        [
            ("COMPID", "C (2)"),
            ("YEARPRD", "C (6)"),
            ("BDATE", "D"),
            ("EDATE", "D"),
            ("PCLOSED", "L"),
            ("PLOCKED", "L"),
            ("PERMLCK", "L"),
        ],
        {"COMPPRD": "COMPID+YEARPRD"},
        per_company=False,
    ),
    "gl_structure": _layout(
        "GLSTRU",
        [
            ("COMPID", "C (2)"),
            ("SEGID", "C (1)"),
            ("SEGLEN", "N (2, 0)"),
            ("SEGMASK", "C (24)"),
        ],
        {"COMPSEG": "COMPID+SEGID"},
        per_company=False,
    ),
    "counters": _layout(
        "SYSDATA",
        [("SYSID", "C (8)"), ("COUNTER", "C (10)"), ("NEXTNO", "C (10)"), ("SEQ", "I")],
        {"SYSID": "SYSID+COUNTER"},
        per_company=False,
    ),
    "gl_accounts": _layout(
        "GLACNT{co}",
        [("GLACNT", "C (24)"), ("GLDESC", "C (30)"), ("GLSTAT", "C (1)")] + AUDIT,
        {"GLACNT": "GLACNT"},
    ),
    "customers": _layout(
        "ARCUST{co}",
        [
            ("CUSTNO", "C (6)"),
            ("COMPANY", "C (35)"),
            ("CONTACT", "C (30)"),
            ("ADDRESS1", "C (35)"),
            ("ADDRESS2", "C (35)"),
            ("CITY", "C (20)"),
            ("STATE", "C (10)"),
            ("ZIP", "C (10)"),
            ("COUNTRY", "C (15)"),
            ("PHONE", "C (20)"),
            ("EMAIL", "C (80)"),
            ("PTERMS", "C (20)"),
            ("BALANCE", "N (14, 2)"),
            ("CREDLIMIT", "N (14, 2)"),
            ("LASTPAY", "D"),
            ("LPYMT", "N (14, 2)"),
            ("ARACCT", "C (24)"),
            ("CURRENCY", "C (3)"),
            ("CREDSTAT", "C (1)"),
            ("CUSTSTAT", "C (1)"),
        ]
        + AUDIT
        + OBJLOCK,
        {"CUSTNO": "CUSTNO", "COMPANY": "UPPER(COMPANY)"},
    ),
    "invoices": _layout(
        "ARMAST{co}",
        [
            ("INVNO", "C (10)"),
            ("CUSTNO", "C (6)"),
            ("INVDTE", "D"),
            ("INVAMT", "N (14, 2)"),
            ("PAIDAMT", "N (14, 2)"),
            ("BALANCE", "N (14, 2)"),
            ("ARTYPE", "C (1)"),
            ("ARSTAT", "C (1)"),
            ("ORNUM", "C (10)"),
            ("PONUM", "C (20)"),
        ]
        + AUDIT
        + OBJLOCK,
        {"INVNO": "INVNO", "CUSTNO": "CUSTNO+INVNO"},
    ),
    # Receipt header and application lines: table names and layout UNVERIFIED (see above).
    "receipts": _layout(
        "ARCASH{co}",
        [
            ("RCPTNO", "C (10)"),
            ("CUSTNO", "C (6)"),
            ("DTEPAID", "D"),
            ("AMOUNT", "N (14, 2)"),
            ("APPLIED", "N (14, 2)"),
            ("UNAPPLIED", "N (14, 2)"),
            ("PAYMETH", "C (10)"),
            ("REFNO", "C (40)"),
            ("GLACNT", "C (24)"),
            ("CREATED", "T"),
        ]
        + AUDIT
        + OBJLOCK,
        {"RCPTNO": "RCPTNO", "REFNO": "REFNO", "CUSTDATE": "CUSTNO+DTOS(DTEPAID)"},
    ),
    "receipt_lines": _layout(
        "ARCAPP{co}",
        [
            ("RCPTNO", "C (10)"),
            ("INVNO", "C (10)"),
            ("CUSTNO", "C (6)"),
            ("PAIDAMT", "N (14, 2)"),
            ("REQAMT", "N (14, 2)"),
            ("DTEPAID", "D"),
        ]
        + AUDIT
        + [("LCKSTAT", "C (1)"), ("LCKUSER", "C (4)")],
        {"RCPTINV": "RCPTNO+INVNO", "INVNO": "INVNO"},
    ),
}


def physical_name(name: str, company: str) -> str:
    """`physical_name("invoices", "01")` -> "ARMAST01"."""
    return TABLES[name].physical.format(co=company)
