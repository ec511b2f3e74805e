"""One 'agent process': fixture recovery, journal recovery, then one POST /cash-receipts.
argv: DATA_DIR JOURNAL IDEM_KEY BODY_JSON.  Env AGENT_FAULT (saga step) / AGENT_STORE_FAULT (TABLE:point)."""
import json, os, sys
sys.path.insert(0, "/tmp/agent_spike")
os.environ["AGENT_TEST_MODE"] = "1"
from spike import fixture_store as fs, schema
from spike.saga import ReceiptSaga, open_journal

data, journal, key, body = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
sf = os.environ.get("AGENT_STORE_FAULT")
if sf:
    table, point = sf.split(":")
    fs.FAULT = lambda p, path: os._exit(137) if p == point and os.path.basename(path).startswith(table) else None
tables = {}
for name, (cols, idx) in schema.TABLES.items():
    n = name.format(co="01")
    tables[n] = fs.FixtureTable(os.path.join(data, n + ".DBF"), reprocess=0.3, indexes=idx)
repairs = {n: a for n, t in tables.items() if (a := t.recover())}
saga = ReceiptSaga(tables, open_journal(journal))
recovered = saga.recover_all()
status, resp = saga.post(key, body)
print(json.dumps({"repairs": repairs, "recovered": recovered, "status": status, "response": resp}))
