"""Q4: VFP record/header locks between processes on Linux for the fault tests."""
import multiprocessing as mp, os, shutil, sys, threading, time
from decimal import Decimal
sys.path.insert(0, "/tmp/agent_spike"); sys.path.insert(0, "/work/shared/reference/experiments")
os.environ["AGENT_TEST_MODE"] = "1"
from spike import schema
from spike.fixture_store import FixtureTable, Locked
from spike.vfplocks import VfpLocks
import vfplock as ref_vfplock  # the reference's helper (POSIX lockf)

D = "/tmp/agent_spike/data/q4"; shutil.rmtree(D, ignore_errors=True)
paths = schema.seed(D); P = paths["ARMAST01"]

def probe(mode, recno):
    """Run in a child: can another process take the record lock right now?"""
    q = mp.Queue()
    def child():
        lk = VfpLocks(P, mode)
        try:
            lk.rlock(recno); q.put("acquired")
        except Locked:
            q.put("REFUSED")
    p = mp.Process(target=child); p.start(); p.join(); return q.get()

print("== 1. POSIX lockf (the reference's vfplock.py) vs OFD locks: the 'close another fd' trap")
for mode in ("posix", "ofd"):
    lk = VfpLocks(P, mode); lk.rlock(2)
    before = probe(mode, 2)
    with open(P, "rb") as fh:  # any other open/close of the same file in this process, e.g. a reader
        fh.read(32)
    after = probe(mode, 2)
    print(f"{mode:5}: holder has rec 2 -> other process: {before}; after holder opened+closed the DBF for a read -> other process: {after}")
    lk.close()

print("\n== 2. two fds in one process (what two agent threads, or a test and the store in one process, would have)")
for mode in ("posix", "ofd"):
    a, b = VfpLocks(P, mode), VfpLocks(P, mode)
    a.rlock(3)
    try:
        b.rlock(3); res = "acquired (no exclusion inside a process)"
    except Locked:
        res = "REFUSED"
    print(f"{mode:5}: fd A holds rec 3, fd B tries rec 3 -> {res}")
    a.close(); b.close()

print("\n== 3. interop: the reference's POSIX helper in another process vs our OFD locks (same bytes)")
ready, done = mp.Event(), mp.Event()
def ref_holder(what):
    lk = ref_vfplock.VfpLocks(P)
    {"rec5": lambda: lk.rlock(5), "header": lk.header_lock, "flock": lk.flock}[what]()
    ready.set(); done.wait(30); lk.close()
for what in ("rec5", "header", "flock"):
    ready.clear(); done.clear()
    h = mp.Process(target=ref_holder, args=(what,)); h.start(); ready.wait(5)
    me = VfpLocks(P, "ofd"); res = []
    for label, fn, undo in [("rlock(5)", lambda: me.rlock(5), lambda: me.runlock(5)),
                            ("rlock(6)", lambda: me.rlock(6), lambda: me.runlock(6)),
                            ("header", me.header_lock, me.header_unlock)]:
        try:
            fn(); undo(); res.append(f"{label} ok")
        except Locked:
            res.append(f"{label} LOCKED")
    print(f"other process (POSIX) holds {what:6}: {', '.join(res)}")
    me.close(); done.set(); h.join()

print("\n== 4. the fault test shape: 423 while held, success once released")
def hold(kind, recno, seconds, ready):
    lk = VfpLocks(P, "ofd")
    lk.rlock(recno) if kind == "record" else lk.header_lock()
    ready.set(); time.sleep(seconds); lk.close()
t = FixtureTable(P, reprocess=0.5)
r = t.seek("INVNO", "10001".rjust(10))[0]
def pay():
    cur = t.read(r)
    return t.update(r, {"PAIDAMT": cur["PAIDAMT"] + 1, "BALANCE": cur["BALANCE"] - 1}, expect={"PAIDAMT": cur["PAIDAMT"]})
def new_invoice():
    return t.append({"INVNO": "30001".rjust(10), "CUSTNO": "ACME", "INVAMT": Decimal(1), "BALANCE": Decimal(1)})
for kind, op in (("record", pay), ("header", new_invoice)):
    ev = mp.Event(); h = mp.Process(target=hold, args=(kind, r, 2.0, ev)); h.start(); ev.wait(5)
    t0 = time.monotonic()
    try:
        op(); print(f"{kind} lock held: write went through (BAD)")
    except Locked as exc:
        print(f"{kind} lock held by another process: Locked('{exc}') after {time.monotonic()-t0:.2f}s of REPROCESS -> 423 RECORD_LOCKED, Retry-After: 1")
    h.join()
    t0 = time.monotonic(); out = op()
    print(f"   released -> retry succeeds in {1000*(time.monotonic()-t0):.1f} ms ->", out if isinstance(out, int) else {k: out[k] for k in ('INVNO', 'PAIDAMT', 'BALANCE')})

print("\n== 5. a holder that dies releases its locks (kernel cleanup on process exit)")
ev = mp.Event()
def die_holding(ready):
    lk = VfpLocks(P, "ofd"); lk.rlock(r); ready.set(); time.sleep(30)
h = mp.Process(target=die_holding, args=(ev,)); h.start(); ev.wait(5)
print("holder alive:", probe("ofd", r)); h.kill(); h.join(); print("holder SIGKILLed:", probe("ofd", r))
