"""Receipts/s through the saga on the fixture store with 100k-row ARMAST (and optionally 100k-row receipt tables)."""
import datetime, os, shutil, sys, tempfile, time
from decimal import Decimal
sys.path.insert(0, "/tmp/agent_spike")
os.environ["AGENT_TEST_MODE"] = "1"
from dbflib import create_dbf
from spike import schema
from spike.fixture_store import FixtureTable
from spike.saga import ReceiptSaga, open_journal

prefill = int(sys.argv[1]) if len(sys.argv) > 1 else 0
D = f"/tmp/agent_spike/data/rps{prefill}"; shutil.rmtree(D, ignore_errors=True)
t0 = time.perf_counter()
schema.seed(D, customers=20000, invoices=100000)
if prefill:
    d0 = datetime.date(2025, 1, 1)
    create_dbf(f"{D}/ARCASH01.DBF", schema.TABLES["ARCASH{co}"][0],
               ({"RCPTNO": str(i).rjust(10), "CUSTNO": f"C{i % 20000:05d}", "DTEPAID": d0, "AMOUNT": Decimal(1), "REFNO": f"OLD{i}",
                 "CREATED": datetime.datetime(2025, 1, 1)} for i in range(1, prefill + 1)), indexes=schema.TABLES["ARCASH{co}"][1])
    create_dbf(f"{D}/ARCAPP01.DBF", schema.TABLES["ARCAPP{co}"][0],
               ({"RCPTNO": str(i).rjust(10), "INVNO": str(10001 + i % 100000).rjust(10), "CUSTNO": f"C{i % 20000:05d}", "PAIDAMT": Decimal(0)}
                for i in range(1, prefill + 1)), indexes=schema.TABLES["ARCAPP{co}"][1])
print(f"seeded ARMAST 100k / ARCUST 20k / receipt tables {prefill} rows in {time.perf_counter()-t0:.1f}s")
tables = {n.format(co="01"): FixtureTable(f"{D}/{n.format(co='01')}.DBF") for n in schema.TABLES}
saga = ReceiptSaga(tables, open_journal(f"{D}/journal.sqlite"))
N, lat = 20, []
for i in range(N):
    j = 4 * i  # invoices 10001+j belong to customer C{j % 20000}
    body = {"custno": f"C{j % 20000:05d}", "date": "2025-05-14", "amount": "50.00", "method": "VISA", "reference": f"TX{i}",
            "applications": [{"invno": str(10001 + j), "amount": "50.00"}]}
    t1 = time.perf_counter(); st, resp = saga.post(f"k{i}", body); lat.append(time.perf_counter() - t1)
    assert st == 201, (st, resp)
lat.sort()
print(f"{N} receipts: {N/sum(lat):.2f} receipts/s, median {1000*lat[N//2]:.0f} ms, max {1000*lat[-1]:.0f} ms")
