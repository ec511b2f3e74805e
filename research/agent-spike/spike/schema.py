"""Fixture layouts for the Sage Pro tables (spike).  Names and widths follow the sandbox
and the reference; the real layouts come from each site's discovery (UNVERIFIED)."""
from __future__ import annotations

import datetime
import os
from decimal import Decimal

from .fixture_store import FixtureTable, create_table

AUDIT = [("ADDUSER", "C (4)"), ("ADDDATE", "D"), ("ADDTIME", "C (8)")]
OBJLOCK = [("LCKSTAT", "C (1)"), ("LCKUSER", "C (4)"), ("LCKDATE", "D"), ("LCKTIME", "C (8)")]

TABLES = {
    "SYCCOMP": ([("COMPID", "C (2)"), ("COMPNAME", "C (35)"), ("CURYR", "C (4)"), ("CURPRD", "C (2)")],
                {"COMPID": "COMPID"}),
    "SYCDFIS": ([("COMPID", "C (2)"), ("YEARPRD", "C (6)"), ("BDATE", "D"), ("EDATE", "D"),
                 ("PCLOSED", "L"), ("PLOCKED", "L"), ("PERMLCK", "L")],
                {"COMPPRD": "COMPID+YEARPRD"}),
    "SYSDATA": ([("SYSID", "C (8)"), ("COUNTER", "C (10)"), ("NEXTNO", "C (10)"), ("SEQ", "I")],
                {"SYSID": "SYSID+COUNTER"}),
    "GLACNT{co}": ([("GLACNT", "C (24)"), ("GLDESC", "C (30)"), ("GLSTAT", "C (1)")] + AUDIT,
                   {"GLACNT": "GLACNT"}),
    "ARCUST{co}": ([("CUSTNO", "C (6)"), ("COMPANY", "C (35)"), ("CONTACT", "C (30)"), ("PHONE", "C (20)"),
                    ("BALANCE", "N (14, 2)"), ("CREDLIMIT", "N (14, 2)"), ("LASTPAY", "D"), ("LPYMT", "N (14, 2)"),
                    ("ARACCT", "C (24)"), ("CREDSTAT", "C (1)"), ("CUSTSTAT", "C (1)"), ("NOTES", "M")]
                   + AUDIT + OBJLOCK,
                   {"CUSTNO": "CUSTNO", "COMPANY": "UPPER(COMPANY)"}),
    "ARMAST{co}": ([("INVNO", "C (10)"), ("CUSTNO", "C (6)"), ("INVDTE", "D"), ("INVAMT", "N (14, 2)"),
                    ("PAIDAMT", "N (14, 2)"), ("BALANCE", "N (14, 2)"), ("ARTYPE", "C (1)"), ("ARSTAT", "C (1)"),
                    ("ORNUM", "C (10)"), ("PONUM", "C (20)")] + AUDIT + OBJLOCK,
                   {"INVNO": "INVNO", "CUSTNO": "CUSTNO+INVNO"}),
    # receipt header + application lines: the real Sage table names/layout are UNVERIFIED
    "ARCASH{co}": ([("RCPTNO", "C (10)"), ("CUSTNO", "C (6)"), ("DTEPAID", "D"), ("AMOUNT", "Y"),
                    ("APPLIED", "Y"), ("UNAPPLIED", "Y"), ("PAYMETH", "C (10)"), ("REFNO", "C (40)"),
                    ("GLACNT", "C (24)"), ("CREATED", "T")] + AUDIT + OBJLOCK,
                   {"RCPTNO": "RCPTNO", "REFNO": "REFNO", "CUSTDATE": "CUSTNO+DTOS(DTEPAID)"}),
    "ARCAPP{co}": ([("RCPTNO", "C (10)"), ("INVNO", "C (10)"), ("CUSTNO", "C (6)"), ("PAIDAMT", "Y"),
                    ("REQAMT", "Y"), ("DISAMT", "Y"), ("DTEPAID", "D"), ("ADDUSER", "C (4)"), ("LCKSTAT", "C (1)")],
                   {"RCPTINV": "RCPTNO+INVNO", "INVNO": "INVNO"}),
}


def rj(s, w):
    return str(s).strip().upper().rjust(w)


def lj(s, w):
    return str(s).strip().upper().ljust(w)


def seed(folder, co="01", customers=12, invoices=56, today=None):
    """A small deterministic company, shaped like the sandbox's seed."""
    os.environ.setdefault("AGENT_TEST_MODE", "1")
    os.makedirs(folder, exist_ok=True)
    today = today or datetime.date(2025, 5, 14)
    P = lambda name: os.path.join(folder, name.format(co=co) + ".DBF")  # noqa: E731
    create_table(P("SYCCOMP"), TABLES["SYCCOMP"][0],
                 [{"COMPID": co, "COMPNAME": "Spike Co", "CURYR": "2025", "CURPRD": "05"}], TABLES["SYCCOMP"][1])
    per = []
    for m in range(1, 13):
        b = datetime.date(2025, m, 1)
        e = (datetime.date(2025, m + 1, 1) if m < 12 else datetime.date(2026, 1, 1)) - datetime.timedelta(days=1)
        per.append({"COMPID": co, "YEARPRD": f"2025{m:02d}", "BDATE": b, "EDATE": e,
                    "PCLOSED": m <= 2, "PLOCKED": m == 3, "PERMLCK": m == 1})
    create_table(P("SYCDFIS"), TABLES["SYCDFIS"][0], per, TABLES["SYCDFIS"][1])
    create_table(P("SYSDATA"), TABLES["SYSDATA"][0],
                 [{"SYSID": "AR" + co, "COUNTER": "RCPTNO", "NEXTNO": "1".rjust(10), "SEQ": 1}], TABLES["SYSDATA"][1])
    create_table(P("GLACNT{co}"), TABLES["GLACNT{co}"][0],
                 [{"GLACNT": a, "GLDESC": d, "GLSTAT": s, "ADDUSER": "SEED"} for a, d, s in
                  [("1000-00", "Cash", ""), ("1100-00", "Undeposited card receipts", ""), ("1200-00", "AR", ""),
                   ("6900-00", "Inactive", "I")]], TABLES["GLACNT{co}"][1])
    custs, invs = [], []
    for i in range(customers):
        custno = lj(f"C{i:05d}" if customers > 12 else ["ACME", "SUPERG", "ZEROBL", "HOLDCO", "IRONWD", "BLUEOX",
                                                        "CEDAR", "DELTA", "EAGLE", "FALCON", "GRANIT", "HARBOR"][i], 6)
        custs.append({"CUSTNO": custno, "COMPANY": f"Customer {i}", "CREDLIMIT": Decimal("10000"),
                      "ARACCT": "1200-00", "CUSTSTAT": "A", "CREDSTAT": "H" if i == 3 else "",
                      "NOTES": f"memo for {custno.strip()}" if i % 4 == 0 else "", "ADDUSER": "SEED",
                      "LASTPAY": None, "BALANCE": Decimal(0)})
    bal = {c["CUSTNO"]: Decimal(0) for c in custs}
    for j in range(invoices):
        c = custs[j % customers]["CUSTNO"] if customers != 12 or j % 12 != 2 else custs[0]["CUSTNO"]
        amt = Decimal(100 + (j * 37) % 900) + Decimal("0.45")
        paid = (amt * Decimal("0.3")).quantize(Decimal("0.01")) if j % 5 == 4 else Decimal(0)
        invs.append({"INVNO": rj(10001 + j, 10), "CUSTNO": c, "INVDTE": today - datetime.timedelta(days=j % 60),
                     "INVAMT": amt, "PAIDAMT": paid, "BALANCE": amt - paid, "ARTYPE": "", "ADDUSER": "SEED",
                     "ORNUM": rj(4053001 + j, 10)})
        bal[c] += amt - paid
    for c in custs:
        c["BALANCE"] = bal[c["CUSTNO"]]
    create_table(P("ARCUST{co}"), TABLES["ARCUST{co}"][0], custs, TABLES["ARCUST{co}"][1])
    create_table(P("ARMAST{co}"), TABLES["ARMAST{co}"][0], invs, TABLES["ARMAST{co}"][1])
    create_table(P("ARCASH{co}"), TABLES["ARCASH{co}"][0], [], TABLES["ARCASH{co}"][1])
    create_table(P("ARCAPP{co}"), TABLES["ARCAPP{co}"][0], [], TABLES["ARCAPP{co}"][1])
    return {name.format(co=co): P(name) for name in TABLES}


def open_all(folder, co="01", **kw):
    return {name.format(co=co): FixtureTable(os.path.join(folder, name.format(co=co) + ".DBF"), **kw)
            for name in TABLES}
