"""Q3: deleted flag, RECALL, PACK; header record count vs file size; the integrity check
and the corruptions it catches."""
import os, shutil, struct, subprocess, sys
from decimal import Decimal
sys.path.insert(0, "/tmp/agent_spike")
os.environ["AGENT_TEST_MODE"] = "1"
import dbf, dbfread
from spike import schema, vfpcodec as vc
from spike.fixture_store import CasMiss, FixtureTable
from spike.integrity import check_table

BASE = "/tmp/agent_spike/data/q3"; shutil.rmtree(BASE, ignore_errors=True)
paths = schema.seed(BASE + "/clean")
P = paths["ARMAST01"]
t = FixtureTable(P)
rj = lambda s: s.rjust(10)

print("== soft delete / recall")
r3 = t.seek("INVNO", rj("10003"))[0]
t.set_deleted(r3)
print("DELETE rec", r3, "-> byte 0 =", t.raw(r3)[:1], "| live SEEK:", t.seek("INVNO", rj("10003")),
      "| SEEK incl. deleted:", t.seek("INVNO", rj("10003"), live=False), "(VFP keeps deleted rows in the index)")
print("readers skip it: fixture rows()", r3 in dict(t.rows()), "| dbfread", any(r["INVNO"].strip() == "10003" for r in dbfread.DBF(P)),
      "| dbfread.deleted", [r["INVNO"] for r in dbfread.DBF(P).deleted])
t.set_deleted(r3, False)
print("RECALL -> byte 0 =", t.raw(r3)[:1], "| live SEEK:", t.seek("INVNO", rj("10003")))

print("\n== PACK renumbers records")
for inv in ("10003", "10010", "10020"):
    t.set_deleted(t.seek("INVNO", rj(inv))[0])
r_before = t.seek("INVNO", rj("10030"))[0]
hb = t.header()
removed = t.pack()
ha = t.header()
r_after = t.seek("INVNO", rj("10030"))[0]
print(f"removed={removed} header reccount {hb.reccount}->{ha.reccount} size {os.path.getsize(P)} "
      f"(= {ha.header_len}+{ha.reccount}*{ha.rec_len}+1) | invoice 10030 was rec {r_before}, now rec {r_after}")
cur = t.read(r_before)
try:  # a plan that kept the old recno must not write to whatever row now has that number
    t.update(r_before, {"PAIDAMT": Decimal("1")}, expect={"INVNO": rj("10030"), "PAIDAMT": Decimal("0.00")})
    print("stale recno CAS: WROTE (bad)")
except CasMiss as m:
    print(f"stale recno CAS with the key in `expect`: CasMiss (rec {r_before} now holds {m.current['INVNO'].strip()})")
print("after PACK:", check_table(P, sample=None) or "OK")

print("\n== corruptions the check catches (each on a fresh copy of the clean company)")
def copy(name):
    d = f"{BASE}/{name}"; shutil.copytree(BASE + "/clean", d); return os.path.join(d, "ARMAST01.DBF")

cases = {}
# a) append killed after the record bytes, before the header count (reference E7a)
p = copy("killed_append")
code = f"""
import os, sys; sys.path.insert(0, '/tmp/agent_spike'); os.environ['AGENT_TEST_MODE'] = '1'
from decimal import Decimal
from spike import fixture_store as fs
fs.FAULT = lambda point, path: os._exit(137) if point == 'record_written' else None
fs.FixtureTable({p!r}).append({{'INVNO': '     20001', 'CUSTNO': 'ACME', 'INVAMT': Decimal('1'), 'BALANCE': Decimal('1')}})
"""
print("a) killed append child exit code:", subprocess.run([sys.executable, "-c", code]).returncode)
cases["a) append killed before header update"] = p
# b) the `dbf` package appends (no CDX maintenance) -> stale index
p = copy("dbf_append")
tb = dbf.Table(p); tb.open(dbf.READ_WRITE)
tb.append({"INVNO": "20002", "CUSTNO": "ACME", "INVAMT": Decimal("1"), "BALANCE": 1, "PAIDAMT": Decimal(0)}); tb.close()
cases["b) dbf package append (CDX untouched)"] = p
# c) a key changed behind the index's back (raw byte patch, like a non-CDX-aware writer)
p = copy("key_patch")
with open(p, "r+b") as fh:
    h = vc.read_header(fh); fh.seek(h.record_pos(5) + h.field("INVNO").offset); fh.write(rj("77777").encode())
cases["c) key field rewritten without reindex"] = p
# d) 0-byte CDX (dbflib refresh_cdx killed mid-rewrite, reference E7b)
p = copy("cdx_zero"); open(p[:-3] + "CDX", "wb").close()
cases["d) 0-byte CDX"] = p
# e) DBF truncated mid-record (copy cut short)
p = copy("truncated"); os.truncate(p, os.path.getsize(p) - 90)
cases["e) DBF truncated by 90 bytes"] = p
# f) header count larger than the data (count bumped, records never written)
p = copy("count_high")
with open(p, "r+b") as fh:
    n = vc.read_header(fh).reccount; fh.seek(4); fh.write(struct.pack("<I", n + 2))
cases["f) header count +2"] = p
# g) header count smaller than the data (an append whose count another writer overwrote, E8)
p = copy("count_low")
with open(p, "r+b") as fh:
    n = vc.read_header(fh).reccount; fh.seek(4); fh.write(struct.pack("<I", n - 1))
cases["g) header count -1"] = p
# h) garbage delete flag; i) memo pointer past the FPT
p = copy("bad_flag")
with open(p, "r+b") as fh:
    h = vc.read_header(fh); fh.seek(h.record_pos(7)); fh.write(b"\x00")
cases["h) delete flag byte 0x00"] = p
pc = copy("bad_memo").replace("ARMAST01", "ARCUST01")
with open(pc, "r+b") as fh:
    h = vc.read_header(fh); fh.seek(h.record_pos(2) + h.field("NOTES").offset); fh.write(struct.pack("<i", 9999))
cases["i) memo pointer past end of FPT"] = pc

for label, p in cases.items():
    print(f"{label:42} -> {check_table(p)}")

print("\n== fixture-only recover() (never on live data), then the check again")
for label, p in cases.items():
    try:
        name = os.path.basename(p)[:-4].replace("01", "{co}")
        tt = FixtureTable(p, indexes=schema.TABLES[name][1])  # tag definitions from the schema
        acts = tt.recover()
        tt.close()
    except Exception as exc:
        acts = [f"cannot recover: {type(exc).__name__}: {exc}"]
    print(f"{label:42} -> actions={acts} | now: {check_table(p) or 'OK'}")
