"""Q1 timing: CDX rebuild and write costs of the fixture store at N rows (default 10k)."""
import datetime, os, shutil, statistics, sys, time
from decimal import Decimal
sys.path.insert(0, "/tmp/agent_spike")
os.environ["AGENT_TEST_MODE"] = "1"
from dbflib import create_dbf
from spike import schema
from spike.fixture_store import FixtureTable
from spike.integrity import check_table

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
D = f"/tmp/agent_spike/data/timing{N}"
shutil.rmtree(D, ignore_errors=True); os.makedirs(D)

def timed(fn, reps=5):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)

d0 = datetime.date(2025, 1, 1)
cols, idx = schema.TABLES["ARMAST{co}"]
rows = ({"INVNO": str(10000 + i).rjust(10), "CUSTNO": f"C{i % 5000:05d}", "INVDTE": d0, "INVAMT": Decimal("100.00"),
         "PAIDAMT": Decimal(0), "BALANCE": Decimal("100.00"), "ADDUSER": "SEED"} for i in range(N))
p = os.path.join(D, "ARMAST01.DBF")
t0 = time.perf_counter(); create_dbf(p, cols, rows, indexes=idx); t_create = time.perf_counter() - t0
ccols, cidx = schema.TABLES["ARCASH{co}"]
crow = lambda i: {"RCPTNO": str(i).rjust(10), "CUSTNO": f"C{i % 5000:05d}", "DTEPAID": d0 + datetime.timedelta(days=i % 300),
                  "AMOUNT": Decimal("10"), "APPLIED": Decimal("10"), "REFNO": f"TX{i:09d}", "CREATED": datetime.datetime(2025, 1, 1, 12)}
pc = os.path.join(D, "ARCASH01.DBF")
t0 = time.perf_counter(); create_dbf(pc, ccols, (crow(i) for i in range(1, N + 1)), indexes=cidx); t_create_c = time.perf_counter() - t0

arm, arc = FixtureTable(p), FixtureTable(pc)
size = lambda q: f"dbf={os.path.getsize(q)/1e6:.2f}MB cdx={os.path.getsize(q[:-3]+'CDX')/1e6:.2f}MB"
print(f"rows={N}  ARMAST01 (2 tags) create+index={t_create:.2f}s {size(p)} | ARCASH01 (3 tags) create+index={t_create_c:.2f}s {size(pc)}")

def rebuild(t):
    t.locks.header_lock(); t.rebuild_cdx(); t.locks.header_unlock()
print(f"CDX rebuild alone (temp+fsync+rename): ARMAST01 {timed(lambda: rebuild(arm)):.3f}s | ARCASH01 {timed(lambda: rebuild(arc)):.3f}s")
i = [N + 1]
def app_inv():
    arm.append({"INVNO": str(10000 + i[0]).rjust(10), "CUSTNO": "ACME", "INVDTE": d0, "INVAMT": Decimal(1), "BALANCE": Decimal(1)}); i[0] += 1
def app_cash():
    arc.append(crow(i[0])); i[0] += 1
print(f"append 1 row incl. rebuild: ARMAST01 {timed(app_inv):.3f}s | ARCASH01 {timed(app_cash):.3f}s")
r = N // 2
def upd_nonkey():
    cur = arm.read(r); arm.update(r, {"PAIDAMT": cur["PAIDAMT"] + 1, "BALANCE": cur["BALANCE"] - 1}, expect={"PAIDAMT": cur["PAIDAMT"]})
def upd_key():
    cur = arm.read(r); arm.update(r, {"CUSTNO": "ZZZZZZ" if cur["CUSTNO"] != "ZZZZZZ" else "C00001"})
print(f"CAS update, no key field (no rebuild): {timed(upd_nonkey, 20)*1000:.2f} ms | update of a key field (rebuild): {timed(upd_key):.3f}s")
key = str(10000 + N // 3).rjust(10)
arm.seek("INVNO", key)
t_seek = timed(lambda: arm.seek("INVNO", key), 200)
print(f"SEEK INVNO through the B-tree: {t_seek*1e6:.0f} us (pages read {arm._cdx_cache[1].last_pages}) -> {arm.seek('INVNO', key)}")
print(f"integrity check sampled(100): ARMAST01 {timed(lambda: check_table(p), 3):.3f}s | full: {timed(lambda: check_table(p, sample=None), 1):.2f}s -> {check_table(p) or 'OK'}")
