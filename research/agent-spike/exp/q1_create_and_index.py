"""Q1: create the Sage-shaped fixture tables (C N D L M Y T I + structural CDX) on Linux,
then append / update (key and non-key) / delete through the fixture store and check every
tag with three independent readers: our B-tree SEEK, dbflib.read_cdx, Perl XBase::cdx."""
import datetime, os, shutil, subprocess, sys
from decimal import Decimal
sys.path.insert(0, "/tmp/agent_spike")
os.environ["AGENT_TEST_MODE"] = "1"
from dbflib import read_cdx, read_cdx_definitions
import dbfread, dbf
from spike import schema, vfpcodec as vc
from spike.fixture_store import FixtureTable
from spike.integrity import check_table

D = "/tmp/agent_spike/data/q1"
shutil.rmtree(D, ignore_errors=True)
paths = schema.seed(D)

def perl(table, tag):
    p = paths[table]
    r = subprocess.run(["perl", "/tmp/agent_spike/spike/cdxdump.pl", p, p[:-3] + "CDX", tag, "C"], capture_output=True, text=True)
    return (r.stdout or r.stderr).strip()

print("== tables created by dbflib 1.1")
for name, p in paths.items():
    with open(p, "rb") as fh:
        h = vc.read_header(fh)
    sizes = {ext: os.path.getsize(p[:-3] + ext) for ext in ("DBF", "CDX", "FPT") if os.path.exists(p[:-3] + ext)}
    print(f"{name:9} ver=0x{h.version:02x} flags=0x{h.table_flags:02x} cp=0x{h.codepage:02x} n={h.reccount:3} "
          f"types={''.join(sorted({f.type for f in h.fields}))} files={sizes} tags={read_cdx_definitions(p[:-3]+'CDX')}")

print("\n== integrity (full: every record SEEKed in every tag) after seeding")
for name, p in paths.items():
    print(f"{name:9}", check_table(p, sample=None) or "OK")

t = {n: FixtureTable(p) for n, p in paths.items()}
print("\n== writes through the fixture store")
now = datetime.datetime(2025, 5, 14, 17, 3, 11, 120000)
r1 = t["ARCASH01"].append({"RCPTNO": "1".rjust(10), "CUSTNO": "ACME  ", "DTEPAID": now.date(), "AMOUNT": Decimal("150.00"),
                           "APPLIED": Decimal("100.00"), "UNAPPLIED": Decimal("50.00"), "PAYMETH": "VISA",
                           "REFNO": "118822719", "GLACNT": "1100-00", "CREATED": now, "ADDUSER": "PTAG"})
r2 = t["ARCAPP01"].append({"RCPTNO": "1".rjust(10), "INVNO": "10001".rjust(10), "CUSTNO": "ACME", "PAIDAMT": Decimal("100"),
                           "REQAMT": Decimal("150"), "DTEPAID": now.date(), "ADDUSER": "PTAG"})
inv = t["ARMAST01"].seek("INVNO", "10001".rjust(10))
print("SEEK INVNO '     10001' ->", inv)
before = t["ARMAST01"].read(inv[0])
t["ARMAST01"].update(inv[0], {"PAIDAMT": before["PAIDAMT"] + 100, "BALANCE": before["INVAMT"] - before["PAIDAMT"] - 100},
                     expect={"PAIDAMT": before["PAIDAMT"]})
new_inv = t["ARMAST01"].append({"INVNO": "9999".rjust(10), "CUSTNO": "ACME", "INVDTE": now.date(), "INVAMT": Decimal("12.35"),
                                "PAIDAMT": Decimal(0), "BALANCE": Decimal("12.35"), "ADDUSER": "PTAG"})
# key-field update: move invoice 10002 to customer SUPERG (CUSTNO tag = CUSTNO+INVNO must follow)
r10002 = t["ARMAST01"].seek("INVNO", "10002".rjust(10))[0]
t["ARMAST01"].update(r10002, {"CUSTNO": "SUPERG"})
# key-field update in an UPPER() tag + memo rewrite
c = t["ARCUST01"].seek("CUSTNO", "ACME  ")[0]
t["ARCUST01"].update(c, {"COMPANY": "acme supply co", "NOTES": "new memo text, written in a new FPT block"})
t["ARMAST01"].set_deleted(t["ARMAST01"].seek("INVNO", "10003".rjust(10))[0])
t["SYSDATA"].update(1, {"NEXTNO": "2".rjust(10), "SEQ": 2}, expect={"NEXTNO": "1".rjust(10)})
print("appended ARCASH rec", r1, "ARCAPP rec", r2, "ARMAST rec", new_inv)

print("\n== read back (fixture codec)")
print("ARCASH01 rec 1:", {k: v for k, v in t["ARCASH01"].read(1).items() if k in ("RCPTNO", "AMOUNT", "UNAPPLIED", "DTEPAID", "CREATED", "REFNO")})
print("ARMAST01 10001:", {k: v for k, v in t["ARMAST01"].read(inv[0]).items() if k in ("INVNO", "INVAMT", "PAIDAMT", "BALANCE")})
print("ARCUST01 ACME:", {k: v for k, v in t["ARCUST01"].read(c).items() if k in ("CUSTNO", "COMPANY", "NOTES", "LASTPAY")})
print("SYSDATA rec 1:", t["SYSDATA"].read(1))
print("SYCDFIS rec 3:", t["SYCDFIS"].read(3))

print("\n== independent readers")
rec = next(iter(dbfread.DBF(paths["ARCASH01"], char_decode_errors="strict")))
print("dbfread ARCASH01:", {k: rec[k] for k in ("RCPTNO", "AMOUNT", "DTEPAID", "CREATED", "REFNO")})
tb = dbf.Table(paths["ARCUST01"]); tb.open(dbf.READ_ONLY)
r = [x for x in tb if x.CUSTNO.strip() == "ACME"][0]
print("dbf ARCUST01:", repr(r.CUSTNO), repr(r.COMPANY), repr(r.NOTES), r.BALANCE); tb.close()
for table, tag in [("ARMAST01", "INVNO"), ("ARMAST01", "CUSTNO"), ("ARCUST01", "COMPANY"), ("ARCASH01", "CUSTDATE"), ("ARCAPP01", "RCPTINV")]:
    out = perl(table, tag)
    print(out[:230] + (" …" if len(out) > 230 else ""))
tags, _ = read_cdx(paths["ARMAST01"][:-3] + "CDX")
ent = tags["CUSTNO"]["entries"]
print("dbflib.read_cdx ARMAST01.CUSTNO entries for SUPERG:", [(k.decode(), r) for k, _, r in ent if k.startswith(b"SUPERG")][:4])
print("SEEK CUSTNO prefix 'SUPERG' ->", t["ARMAST01"].seek("CUSTNO", "SUPERG", prefix=True),
      "| SEEK INVNO '      9999' ->", t["ARMAST01"].seek("INVNO", "9999".rjust(10)),
      "| SEEK INVNO '     10003' (deleted) live/all ->", t["ARMAST01"].seek("INVNO", "10003".rjust(10)),
      t["ARMAST01"].seek("INVNO", "10003".rjust(10), live=False))
print("SEEK COMPANY 'ACME SUPPLY CO' ->", t["ARCUST01"].seek("COMPANY", "ACME SUPPLY CO"),
      "| SEEK CUSTDATE 'ACME  20250514' ->", t["ARCASH01"].seek("CUSTDATE", "ACME  20250514"))

print("\n== integrity (full) after writes")
for name, p in paths.items():
    print(f"{name:9}", check_table(p, sample=None) or "OK")

print("\n== Perl XBase::cdx full walk vs keys computed from the raw DBF rows (no dbflib involved)")
import re
def perl_entries(table, tag):
    out = perl(table, tag)
    return sorted((k, int(r)) for k, r in re.findall(r"'([^']*)'=>(\d+)", out))
def expect(table, keyfn, width):
    return sorted((keyfn(row).rstrip(" "), recno) for recno, row in t[table].rows(include_deleted=True))
checks = [("ARMAST01", "INVNO", lambda r: r["INVNO"], 10), ("ARMAST01", "CUSTNO", lambda r: r["CUSTNO"] + r["INVNO"], 16),
          ("ARCUST01", "COMPANY", lambda r: r["COMPANY"].upper(), 35), ("ARCUST01", "CUSTNO", lambda r: r["CUSTNO"], 6),
          ("ARCASH01", "CUSTDATE", lambda r: r["CUSTNO"] + r["DTEPAID"].strftime("%Y%m%d"), 14),
          ("ARCAPP01", "RCPTINV", lambda r: r["RCPTNO"] + r["INVNO"], 20), ("SYCDFIS", "COMPPRD", lambda r: r["COMPID"] + r["YEARPRD"], 8)]
for table, tag, fn, w in checks:
    got = [(k.rstrip(" "), r) for k, r in perl_entries(table, tag)]
    exp = expect(table, fn, w)
    print(f"{table}.{tag}: perl entries={len(got)} expected={len(exp)} identical={got == exp}")
