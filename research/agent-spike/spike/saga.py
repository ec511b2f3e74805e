"""POST /cash-receipts as a journalled, resumable saga over the fixture store (spike).

Journal: SQLite, WAL, synchronous=FULL.  The request is planned (all reads and rules,
nothing written), then carried out in steps S1..S6; the journal is committed after each
step, and every step has a check that tells whether its Sage write already happened, so a
restart can repeat the step safely.  AGENT_FAULT=exit_after:S<n>[:<k>] kills the process
right after step n's (k-th) Sage write and before the journal commit.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import sqlite3
from decimal import Decimal

from .fixture_store import CasMiss, Locked

AGENT = "PTAG"
CENT = Decimal("0.01")
FINAL = ("DONE", "REFUSED", "NEEDS_REVIEW")


class Refused(Exception):
    def __init__(self, status, code, detail):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def _fault(step, k=1):
    spec = os.environ.get("AGENT_FAULT", "")
    if spec in (f"exit_after:{step}", f"exit_after:{step}:{k}"):
        os._exit(137)


def open_journal(path):
    db = sqlite3.connect(path, isolation_level=None, timeout=10)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript("""
    CREATE TABLE IF NOT EXISTS receipt_journal(
      company TEXT, idem_key TEXT, req_hash TEXT, reference TEXT, state TEXT, receipt_no TEXT,
      plan_json TEXT, progress_json TEXT DEFAULT '{}', response_status INT, response_json TEXT,
      created_at TEXT, updated_at TEXT, PRIMARY KEY(company, idem_key));
    CREATE UNIQUE INDEX IF NOT EXISTS live_reference ON receipt_journal(company, reference)
      WHERE state NOT IN ('REFUSED');
    CREATE TABLE IF NOT EXISTS step_log(company TEXT, idem_key TEXT, step TEXT, detail TEXT, at TEXT);
    CREATE TABLE IF NOT EXISTS change_journal(seq INTEGER PRIMARY KEY AUTOINCREMENT, company TEXT,
      kind TEXT, key TEXT, at TEXT);
    """)
    return db


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def _req_hash(body):
    norm = {**body, "custno": body["custno"].strip().upper(), "amount": str(Decimal(body["amount"]).quantize(CENT)),
            "applications": [{"invno": a["invno"].strip().upper(), "amount": str(Decimal(a["amount"]).quantize(CENT))}
                             for a in body.get("applications", [])]}
    return hashlib.sha256(json.dumps(norm, sort_keys=True).encode()).hexdigest()


class ReceiptSaga:
    def __init__(self, tables, journal, company="01"):
        self.t, self.db, self.co = tables, journal, company
        self.cash, self.app = tables[f"ARCASH{company}"], tables[f"ARCAPP{company}"]
        self.inv, self.cust = tables[f"ARMAST{company}"], tables[f"ARCUST{company}"]

    # ------------------------------------------------------------ entry point
    def post(self, idem_key, body):
        h = _req_hash(body)
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("SELECT req_hash, state, response_status, response_json FROM receipt_journal "
                         "WHERE company=? AND idem_key=?", (self.co, idem_key)).fetchone()
        if row:
            db.execute("COMMIT")
            if row[0] != h:
                return 409, {"code": "IDEMPOTENCY_CONFLICT"}
            if row[1] in ("DONE", "REFUSED"):
                return (200 if row[1] == "DONE" else row[2]), json.loads(row[3])
            if row[1] == "NEEDS_REVIEW":
                return 503, {"code": "UNAVAILABLE", "detail": "receipt is waiting for review"}
            return self.resume(idem_key, first=False)
        try:
            plan = self.plan(body)
        except Refused as r:
            resp = {"code": r.code, "detail": r.detail}
            if r.status == 423:  # transient: nothing stored, the caller retries
                db.execute("ROLLBACK")
                return 423, resp
            db.execute("INSERT INTO receipt_journal VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                       (self.co, idem_key, h, body["reference"].strip(), "REFUSED", None, None, "{}",
                        r.status, json.dumps(resp), _now(), _now()))
            db.execute("COMMIT")
            return r.status, resp
        db.execute("INSERT INTO receipt_journal VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                   (self.co, idem_key, h, plan["reference"], "PLANNED", None, json.dumps(plan), "{}",
                    None, None, _now(), _now()))
        db.execute("COMMIT")
        return self.resume(idem_key, first=True)

    # ------------------------------------------------------------ planning (no writes)
    def plan(self, body):
        ref = body["reference"].strip()
        if self.db.execute("SELECT 1 FROM receipt_journal WHERE company=? AND reference=? AND state!='REFUSED'",
                           (self.co, ref)).fetchone() or self.cash.seek("REFNO", ref):
            raise Refused(409, "DUPLICATE_RECEIPT", f"reference {ref} is already on a receipt")
        custno = body["custno"].strip().upper().ljust(6)
        c = self.cust.seek("CUSTNO", custno)
        if not c:
            raise Refused(422, "CUSTOMER_NOT_FOUND", custno.strip())
        if self.cust.read(c[0])["LCKSTAT"].strip():
            raise Refused(423, "RECORD_LOCKED", f"customer {custno.strip()} is in use")
        amount = Decimal(body["amount"]).quantize(CENT)
        apps, total = [], Decimal(0)
        for a in sorted(body.get("applications", []), key=lambda a: a["invno"].strip().upper().rjust(10)):
            invno = a["invno"].strip().upper().rjust(10)
            hits = self.inv.seek("INVNO", invno)
            row = self.inv.read(hits[0]) if hits else None
            if not row or row["CUSTNO"] != custno:
                raise Refused(422, "INVOICE_NOT_FOUND", invno.strip())
            if row["BALANCE"] <= 0:
                raise Refused(422, "INVOICE_NOT_OPEN", invno.strip())
            if row["LCKSTAT"].strip():
                raise Refused(423, "RECORD_LOCKED", f"invoice {invno.strip()} is in use")
            req = Decimal(a["amount"]).quantize(CENT)
            applied = min(req, row["BALANCE"])
            total += req
            apps.append({"invno": invno, "requested": str(req), "applied": str(applied),
                         "paid_before": str(row["PAIDAMT"]), "recno_hint": hits[0]})
        if total > amount:
            raise Refused(422, "OVER_APPLICATION", f"{total} > {amount}")
        applied = sum(Decimal(a["applied"]) for a in apps)
        return {"custno": custno, "date": body["date"], "amount": str(amount), "method": body["method"].upper(),
                "reference": ref, "gl_account": body.get("gl_account", ""), "apps": apps,
                "applied": str(applied), "unapplied": str(amount - applied)}

    # ------------------------------------------------------------ steps
    def _load(self, idem_key):
        st, rno, plan, prog = self.db.execute(
            "SELECT state, receipt_no, plan_json, progress_json FROM receipt_journal WHERE company=? AND idem_key=?",
            (self.co, idem_key)).fetchone()
        return st, rno, json.loads(plan), json.loads(prog)

    def _commit(self, idem_key, state, detail, **cols):
        sets = ", ".join(f"{k}=?" for k in ["state", "updated_at", *cols])
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(f"UPDATE receipt_journal SET {sets} WHERE company=? AND idem_key=?",
                        (state, _now(), *cols.values(), self.co, idem_key))
        self.db.execute("INSERT INTO step_log VALUES (?,?,?,?,?)", (self.co, idem_key, state, detail, _now()))
        if state == "DONE":
            plan = self._load(idem_key)[2]
            for a in plan["apps"]:
                self.db.execute("INSERT INTO change_journal(company, kind, key, at) VALUES (?,?,?,?)",
                                (self.co, "invoice", a["invno"], _now()))
            self.db.execute("INSERT INTO change_journal(company, kind, key, at) VALUES (?,?,?,?)",
                            (self.co, "customer", plan["custno"], _now()))
        self.db.execute("COMMIT")

    def resume(self, idem_key, first=False):
        try:
            return self._run(idem_key, first)
        except Locked as exc:  # a Sage user holds a lock: transient, state kept, caller retries
            return 423, {"code": "RECORD_LOCKED", "detail": str(exc)}

    def _run(self, idem_key, first):
        st, rno, plan, prog = self._load(idem_key)
        order = ["PLANNED", "NUMBERED", "HEADER_WRITTEN", "LINES_WRITTEN", "INVOICES_APPLIED", "CUSTOMER_UPDATED"]
        # S2's check first: a header carrying our reference and our in-progress marker means
        # S1 and S2 happened before a crash that lost the journal commit: adopt its number.
        if st in ("PLANNED", "NUMBERED"):
            own = [r for r in self.cash.seek("REFNO", plan["reference"]) if self.cash.read(r)["LCKUSER"] == AGENT]
            if own:
                rno = self.cash.read(own[0])["RCPTNO"]
                self._commit(idem_key, "HEADER_WRITTEN", f"adopted header rec {own[0]}", receipt_no=rno)
                st = "HEADER_WRITTEN"
        if st == "PLANNED":  # S1: take a number (check: journal has receipt_no; a crash here leaves a gap)
            sysd = self.t["SYSDATA"]
            r = sysd.seek("SYSID", f"AR{self.co}".ljust(8) + "RCPTNO".ljust(10))[0]
            while True:
                cur = sysd.read(r)
                n = int(cur["NEXTNO"])
                while self.cash.seek("RCPTNO", str(n).rjust(10), live=False):
                    n = n + 1 if n < 999999 else 1
                try:
                    sysd.update(r, {"NEXTNO": str(n + 1 if n < 999999 else 1).rjust(10)}, expect={"NEXTNO": cur["NEXTNO"]})
                    break
                except CasMiss:
                    continue
            rno = str(n).rjust(10)
            _fault("S1")
            self._commit(idem_key, "NUMBERED", f"took {n}", receipt_no=rno)
            st = "NUMBERED"
        if st == "NUMBERED":  # S2: header row with the in-progress marker (check: REFNO tag, done above)
            now = datetime.datetime.now()
            self.cash.append({"RCPTNO": rno, "CUSTNO": plan["custno"], "DTEPAID": datetime.date.fromisoformat(plan["date"]),
                              "AMOUNT": Decimal(plan["amount"]), "APPLIED": Decimal(plan["applied"]),
                              "UNAPPLIED": Decimal(plan["unapplied"]), "PAYMETH": plan["method"], "REFNO": plan["reference"],
                              "GLACNT": plan["gl_account"], "CREATED": now, "ADDUSER": AGENT, "ADDDATE": now.date(),
                              "ADDTIME": now.strftime("%H:%M:%S"), "LCKSTAT": "L", "LCKUSER": AGENT})
            _fault("S2")
            self._commit(idem_key, "HEADER_WRITTEN", "header appended")
            st = "HEADER_WRITTEN"
        if st == "HEADER_WRITTEN":  # S3: one line per application (check: RCPTINV tag)
            for k, a in enumerate(plan["apps"], 1):
                if not self.app.seek("RCPTINV", rno + a["invno"]):
                    self.app.append({"RCPTNO": rno, "INVNO": a["invno"], "CUSTNO": plan["custno"],
                                     "PAIDAMT": Decimal(a["applied"]), "REQAMT": Decimal(a["requested"]),
                                     "DTEPAID": datetime.date.fromisoformat(plan["date"]), "ADDUSER": AGENT, "LCKSTAT": "L"})
                    _fault("S3", k)
            self._commit(idem_key, "LINES_WRITTEN", f"{len(plan['apps'])} lines")
            st = "LINES_WRITTEN"
        if st == "LINES_WRITTEN":  # S4: compare-and-set per invoice, marker in the same record write
            for k, a in enumerate(plan["apps"], 1):
                if a["invno"] in prog.get("applied", []):
                    continue
                r = self.inv.seek("INVNO", a["invno"])[0]
                cur = self.inv.read(r)
                before, applied = Decimal(a["paid_before"]), Decimal(a["applied"])
                mine = cur["LCKSTAT"] == "L" and cur["LCKUSER"] == AGENT
                if mine and cur["PAIDAMT"] == before + applied:
                    pass  # written before the crash: the marker proves it was us
                elif cur["LCKSTAT"].strip() and not mine:
                    raise Locked(f"invoice {a['invno'].strip()} is in use by {cur['LCKUSER'].strip()}")
                elif cur["PAIDAMT"] == before:
                    paid = before + applied
                    try:
                        self.inv.update(r, {"PAIDAMT": paid, "BALANCE": cur["INVAMT"] - paid, "LCKSTAT": "L", "LCKUSER": AGENT},
                                        expect={"INVNO": a["invno"], "PAIDAMT": before, "LCKSTAT": " "})
                    except CasMiss as m:
                        return self._review(idem_key, f"invoice {a['invno'].strip()} changed: {m.current['PAIDAMT']}")
                    _fault("S4", k)
                else:
                    return self._review(idem_key, f"invoice {a['invno'].strip()} PAIDAMT {cur['PAIDAMT']} != planned {before}")
                prog.setdefault("applied", []).append(a["invno"])
                self._commit(idem_key, "LINES_WRITTEN", f"applied {a['invno'].strip()}", progress_json=json.dumps(prog))
            self._commit(idem_key, "INVOICES_APPLIED", "all invoices applied")
            st = "INVOICES_APPLIED"
        if st == "INVOICES_APPLIED":  # S5: customer balance recomputed (idempotent)
            c = self.cust.seek("CUSTNO", plan["custno"])[0]
            total = sum((self.inv.read(r)["BALANCE"] for r in self.inv.seek("CUSTNO", plan["custno"], prefix=True)), Decimal(0))
            self.cust.update(c, {"BALANCE": total, "LASTPAY": datetime.date.fromisoformat(plan["date"]),
                                 "LPYMT": Decimal(plan["amount"])})
            _fault("S5")
            self._commit(idem_key, "CUSTOMER_UPDATED", f"balance {total}")
            st = "CUSTOMER_UPDATED"
        if st == "CUSTOMER_UPDATED":  # S6: clear our markers (idempotent), then DONE with the response
            for r in self.cash.seek("RCPTNO", rno):
                if self.cash.read(r)["LCKUSER"] == AGENT:
                    self.cash.update(r, {"LCKSTAT": " ", "LCKUSER": " "})
            for r in self.app.seek("RCPTINV", rno, prefix=True):
                self.app.update(r, {"LCKSTAT": " "})
            for a in plan["apps"]:
                r = self.inv.seek("INVNO", a["invno"])[0]
                if self.inv.read(r)["LCKUSER"] == AGENT:
                    self.inv.update(r, {"LCKSTAT": " ", "LCKUSER": " "})
            _fault("S6")
            resp = {"receipt_no": rno.strip(), "custno": plan["custno"].strip(), "date": plan["date"], "amount": plan["amount"],
                    "method": plan["method"], "reference": plan["reference"], "idempotency_key": idem_key,
                    "applications": [{"invno": a["invno"].strip(), "amount": a["applied"], "requested_amount": a["requested"]}
                                     for a in plan["apps"]],
                    "applied_amount": plan["applied"], "unapplied_amount": plan["unapplied"], "gl_account": plan["gl_account"]}
            self._commit(idem_key, "DONE", "published", response_status=201, response_json=json.dumps(resp))
            return (201 if first else 200), resp
        raise AssertionError(st)

    def _review(self, idem_key, why):
        self._commit(idem_key, "NEEDS_REVIEW", why)
        return 503, {"code": "UNAVAILABLE", "detail": f"needs review: {why}"}

    def recover_all(self):
        """At start, before new work: finish every unfinished entry (or flag it)."""
        out = []
        for (key,) in self.db.execute("SELECT idem_key FROM receipt_journal WHERE company=? AND state NOT IN (?,?,?)",
                                      (self.co, *FINAL)).fetchall():
            out.append((key, self.resume(key)))
        return out
