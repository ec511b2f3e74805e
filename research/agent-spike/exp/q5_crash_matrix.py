"""Q5: kill the agent after each write step (and inside store operations), restart, repeat
the same request; the receipt must end written once with the index and invariants intact."""
import json, os, re, shutil, subprocess, sys
from decimal import Decimal
sys.path.insert(0, "/tmp/agent_spike")
os.environ["AGENT_TEST_MODE"] = "1"
from spike import schema
from spike.fixture_store import FixtureTable
from spike.integrity import check_table

BASE = "/tmp/agent_spike/data/q5"; shutil.rmtree(BASE, ignore_errors=True)
schema.seed(BASE + "/clean")
PY, CHILD = sys.executable, "/tmp/agent_spike/exp/q5_agent_child.py"
BODY = {"custno": "acme", "date": "2025-05-14", "amount": "300.00", "method": "visa", "reference": "118822719",
        "applications": [{"invno": "10001", "amount": "150.00"}, {"invno": "10003", "amount": "100.00"}],
        "gl_account": "1100-00"}

def run(d, env_extra=None, key="k-1", body=BODY):
    env = {**os.environ, **(env_extra or {})}
    r = subprocess.run([PY, CHILD, d, d + "/journal.sqlite", key, json.dumps(body)], env=env, capture_output=True, text=True)
    return r.returncode, (json.loads(r.stdout) if r.returncode == 0 else r.stderr[-300:])

def invariants(d):
    T = {n: FixtureTable(os.path.join(d, n + ".DBF")) for n in ("ARCASH01", "ARCAPP01", "ARMAST01", "ARCUST01", "SYSDATA")}
    bad = []
    heads = [r for _, r in T["ARCASH01"].rows() if r["REFNO"].strip() == "118822719"]
    if len(heads) != 1:
        bad.append(f"{len(heads)} live receipts carry the reference")
    rno = heads[0]["RCPTNO"] if heads else None
    lines = [r for _, r in T["ARCAPP01"].rows() if r["RCPTNO"] == rno]
    if len(lines) != 2:
        bad.append(f"{len(lines)} lines")
    inv = {r["INVNO"].strip(): r for _, r in T["ARMAST01"].rows()}
    if inv["10001"]["PAIDAMT"] != Decimal("100.45") or inv["10003"]["PAIDAMT"] != Decimal("100.00"):
        bad.append(f"PAIDAMT 10001={inv['10001']['PAIDAMT']} 10003={inv['10003']['PAIDAMT']}")
    bad += [f"{k}: invamt-paidamt != balance" for k, r in inv.items() if r["INVAMT"] - r["PAIDAMT"] != r["BALANCE"]]
    acme = [r for _, r in T["ARCUST01"].rows() if r["CUSTNO"] == "ACME  "][0]
    if acme["BALANCE"] != sum(r["BALANCE"] for r in inv.values() if r["CUSTNO"] == "ACME  "):
        bad.append("ARCUST.BALANCE != sum of invoices")
    for n in ("ARCASH01", "ARCAPP01", "ARMAST01"):
        bad += [f"{n} marker left" for _, r in T[n].rows() if r.get("LCKSTAT", " ").strip()]
    for n in T:
        bad += [f"{n}: {p}" for p in check_table(os.path.join(d, n + ".DBF"), sample=None)]
    # independent CDX reader: the receipt must be reachable through REFNO and RCPTNO tags
    p = os.path.join(d, "ARCASH01.DBF")
    out = subprocess.run(["perl", "/tmp/agent_spike/spike/cdxdump.pl", p, p[:-3] + "CDX", "REFNO", "C"], capture_output=True, text=True).stdout
    if "'118822719'" not in out:
        bad.append("perl: REFNO tag misses the receipt")
    nextno = T["SYSDATA"].read(1)["NEXTNO"].strip()
    return bad, (rno or "").strip(), nextno

def main():
    faults = [("none", {}), ("S1", {"AGENT_FAULT": "exit_after:S1"}), ("S2", {"AGENT_FAULT": "exit_after:S2"}),
              ("S3 line 1", {"AGENT_FAULT": "exit_after:S3:1"}), ("S3 line 2", {"AGENT_FAULT": "exit_after:S3:2"}),
              ("S4 invoice 1", {"AGENT_FAULT": "exit_after:S4:1"}), ("S4 invoice 2", {"AGENT_FAULT": "exit_after:S4:2"}),
              ("S5", {"AGENT_FAULT": "exit_after:S5"}), ("S6", {"AGENT_FAULT": "exit_after:S6"}),
              ("ARCASH append: record written, count not", {"AGENT_STORE_FAULT": "ARCASH01:record_written"}),
              ("ARCASH append: count written, CDX not", {"AGENT_STORE_FAULT": "ARCASH01:header_written"}),
              ("ARCAPP append: new CDX built, not renamed", {"AGENT_STORE_FAULT": "ARCAPP01:cdx_built"}),
              ("SYSDATA CAS (hook never fires: no key field)", {"AGENT_STORE_FAULT": "SYSDATA:cdx_built"})]
    print(f"{'kill point':44} {'1st':>4} {'restart: repairs / recovered / status':60} receipt next  invariants")
    for label, env in faults:
        d = f"{BASE}/{re.sub(r'[^a-z0-9]+', '_', label.lower())}"
        shutil.copytree(BASE + "/clean", d)
        rc1, out1 = run(d, env)
        rc2, out = run(d)
        rc3, out3 = run(d)  # and once more: must be a pure replay
        if rc2 != 0:
            print(label, "restart failed:", out); continue
        rep = {k: [a[:28] for a in v] for k, v in out["repairs"].items()}
        rec = [(k, s) for k, (s, _) in out["recovered"]]
        bad, rno, nextno = invariants(d)
        first = out1["status"] if rc1 == 0 else rc1
        print(f"{label:44} {first:>4} {str(rep)[:34]:34} {str(rec):14} {out['status']}/{out3['status']:<6} {rno:>7} {nextno:>4}  {bad or 'OK'}")

    print("\n== other outcomes on the clean company")
    d = BASE + "/other"; shutil.copytree(BASE + "/clean", d)
    print("same key, different body  ->", run(d, key="k-1")[1]["status"], run(d, key="k-1", body={**BODY, "amount": "301.00"})[1]["response"]["code"])
    print("new key, same reference   ->", run(d, key="k-2")[1]["response"])
    os.remove(d + "/journal.sqlite")
    for ext in ("-wal", "-shm"):
        if os.path.exists(d + "/journal.sqlite" + ext): os.remove(d + "/journal.sqlite" + ext)
    print("journal deleted, repeat k-1 ->", run(d, key="k-1")[1]["response"], "(Sage REFNO lookup still refuses a 2nd receipt)")
    # concurrent change between plan and S4: a 'Sage user' pays invoice 10003 after the agent planned
    d = BASE + "/concurrent"; shutil.copytree(BASE + "/clean", d)
    rc, _ = run(d, {"AGENT_FAULT": "exit_after:S3:2"})
    t = FixtureTable(os.path.join(d, "ARMAST01.DBF")); r = t.seek("INVNO", "10003".rjust(10))[0]; cur = t.read(r)
    t.update(r, {"PAIDAMT": cur["PAIDAMT"] + 5, "BALANCE": cur["BALANCE"] - 5})
    out = run(d)[1]
    print("invoice changed by someone else mid-saga ->", out["recovered"], "| repeat:", out["status"], out["response"]["detail"])
    # LCKSTAT object lock held by a Sage user: 423, then success once cleared
    d = BASE + "/objlock"; shutil.copytree(BASE + "/clean", d)
    t = FixtureTable(os.path.join(d, "ARMAST01.DBF")); r = t.seek("INVNO", "10003".rjust(10))[0]
    t.update(r, {"LCKSTAT": "L", "LCKUSER": "JOE"})
    o1 = run(d)[1]; t.update(r, {"LCKSTAT": " ", "LCKUSER": " "}); o2 = run(d)[1]
    print("LCKSTAT='L' by JOE ->", o1["status"], o1["response"]["code"], "| cleared ->", o2["status"], "| invariants:", invariants(d)[0] or "OK")


if __name__ == "__main__":
    main()
