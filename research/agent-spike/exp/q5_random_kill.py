"""Q5b: SIGKILL the agent at a random moment during the POST (N runs), restart, repeat."""
import json, os, random, shutil, signal, subprocess, sys, time, collections
sys.path.insert(0, "/tmp/agent_spike"); sys.path.insert(0, "/tmp/agent_spike/exp")
os.environ["AGENT_TEST_MODE"] = "1"
from q5_crash_matrix import BASE, BODY, CHILD, PY, invariants, run  # reuses the clean company + checks
N = int(sys.argv[1]) if len(sys.argv) > 1 else 40
LO, HI = (float(x) for x in (sys.argv[2:4] if len(sys.argv) > 3 else (0.4, 1.1)))
rnd = random.Random(7)
# time a full unfaulted run to pick the kill window
d = f"{BASE}/rk_time"; shutil.copytree(BASE + "/clean", d); t0 = time.monotonic(); run(d); full = time.monotonic() - t0
print(f"unfaulted child run: {full:.2f}s (python start + imports + post)")
stats, failures = collections.Counter(), []
for i in range(N):
    d = f"{BASE}/rk{i}"; shutil.copytree(BASE + "/clean", d)
    p = subprocess.Popen([PY, CHILD, d, d + "/journal.sqlite", "k-1", json.dumps(BODY)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(rnd.uniform(LO, HI) * full); p.send_signal(signal.SIGKILL); p.wait()
    import sqlite3
    st = "no journal row"
    if os.path.exists(d + "/journal.sqlite"):
        try:
            row = sqlite3.connect(d + "/journal.sqlite").execute("SELECT state FROM receipt_journal").fetchone()
            st = row[0] if row else "no journal row"
        except sqlite3.OperationalError:
            st = "journal not created"
    rc, out = run(d)
    bad, rno, nextno = invariants(d) if rc == 0 else (["restart failed"], "", "")
    stats[(st if p.returncode == -9 else "finished before kill", bool(out.get("repairs")) if rc == 0 else None, out["status"] if rc == 0 else None)] += 1
    if bad: failures.append((i, st, bad))
    shutil.rmtree(d)
for k, v in sorted(stats.items(), key=str):
    print(f"state at kill={k[0]:18} fixture repairs={k[1]!s:5} restart status={k[2]} : {v} runs")
print("runs with a broken invariant:", failures or "none")
