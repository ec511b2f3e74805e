"""Q2: right-justified keys ('     10046') through each writer and reader."""
import datetime, os, shutil, sys
from decimal import Decimal
sys.path.insert(0, "/tmp/agent_spike")
os.environ["AGENT_TEST_MODE"] = "1"
import dbf, dbfread
from dbflib import create_dbf, insert_rows
from spike import schema, vfpcodec as vc
from spike.fixture_store import FixtureTable

D = "/tmp/agent_spike/data/q2"; shutil.rmtree(D, ignore_errors=True); os.makedirs(D)
p = os.path.join(D, "ARMAST01.DBF")
cols, idx = schema.TABLES["ARMAST{co}"]
create_dbf(p, cols, [{"INVNO": "10045".rjust(10), "CUSTNO": "ACME", "INVAMT": Decimal("100"), "BALANCE": Decimal("100")}], indexes=idx)

def raw_invnos():
    with open(p, "rb") as fh:
        h = vc.read_header(fh)
        f = h.field("INVNO")
        out = []
        for r in range(1, h.reccount + 1):
            fh.seek(h.record_pos(r) + f.offset)
            out.append(fh.read(f.length))
    return out

print("1. dbflib create_dbf('     10045') raw bytes:", raw_invnos())
t = dbf.Table(p); t.open(dbf.READ_WRITE)
t.append({"INVNO": "10046".rjust(10), "CUSTNO": "ACME", "INVAMT": Decimal("1"), "BALANCE": 1, "PAIDAMT": Decimal(0)})
with t[0] as r:
    r.INVNO = "10045".rjust(10)  # rewrite the existing key unchanged
t.close()
print("2. dbf 0.99.11 append('     10046') and rewrite of rec 1 ('     10045'):", raw_invnos(), "<- leading spaces stripped")

# Workaround A: fixture codec (in-place record writes) and dbflib appends keep the bytes as given.
ft = FixtureTable(p)
ft.update(1, {"INVNO": "10045".rjust(10)})
ft.update(2, {"INVNO": "10046".rjust(10)})
ft.append({"INVNO": "10047".rjust(10), "CUSTNO": "ACME", "INVAMT": Decimal("5"), "BALANCE": Decimal("5")})
print("3. fixture store update(1,2) + append('     10047'):", raw_invnos())

# Workaround B (only if `dbf` must be used): replace its C-field encoder on the open table.
def update_character_keep(string, fielddef, memo, decoder, encoder):
    length = fielddef[dbf.tables.LENGTH] if hasattr(dbf.tables, "LENGTH") else fielddef[1]
    if string is None:
        return length * b" "
    raw = encoder(string.rstrip(" "))[0]  # trailing pad only; leading spaces are data
    if len(raw) > length:
        raise ValueError(f"{string!r} does not fit C({length})")
    return raw
t = dbf.Table(p); t.open(dbf.READ_WRITE)
CHAR = [k for k in t._meta.fieldtypes if t._meta.fieldtypes[k]["Type"] == "Character"][0]
t._meta.fieldtypes[CHAR]["Update"] = update_character_keep
t.append({"INVNO": "10049".rjust(10), "CUSTNO": "ACME", "INVAMT": Decimal("1"), "BALANCE": 1, "PAIDAMT": Decimal(0)})
t.close()
print("4. dbf with a patched C encoder, append('     10049'):", raw_invnos()[-1], "(CDX still not maintained by dbf)")

print("5. readers of record 1:")
t = dbf.Table(p); t.open(dbf.READ_ONLY); print("   dbf      :", repr(t[0].INVNO)); t.close()
print("   dbfread  :", repr(next(iter(dbfread.DBF(p)))["INVNO"]), "(right-strips only)")
print("   fixture  :", repr(ft.read(1)["INVNO"]))

# Why it matters: key order and SEEK
ft.locks.header_lock(); ft.rebuild_cdx(); ft.locks.header_unlock()
from dbflib import read_cdx
tags, _ = read_cdx(p[:-3] + "CDX")
print("6. INVNO tag order:", [k.decode() for k, _, _ in tags["INVNO"]["entries"]])
print("   SEEK '     10045' ->", ft.seek("INVNO", "10045".rjust(10)), "| SEEK '10045     ' ->", ft.seek("INVNO", "10045"))

# The contract's normalisation round trip (docs/sagepro-gateway.md §2)
norm = {"invno": lambda s: s.strip().upper().rjust(10), "custno": lambda s: s.strip().upper().ljust(6),
        "receipt_no": lambda s: s.strip().rjust(10)}
for k, v in [("invno", "10045"), ("invno", " 10045 "), ("custno", "acme"), ("receipt_no", "000012")]:
    stored = norm[k](v)
    print(f"7. {k} {v!r} -> stored {stored!r} -> answered {stored.strip()!r}")
