"""The production store: Sage Pro's FoxPro tables through the Visual FoxPro OLE DB
provider (VFPOLEDB, the VFP 9 engine), driven from 32-bit Python with `adodbapi`
(part of pywin32). The engine keeps the indexes, takes the same record and header
locks as Sage Pro, and waits for them at most `SET REPROCESS` seconds.

**This store has never been run against the real provider or a real Sage Pro
company.** No Windows machine with VFPOLEDB was available. It is tested on Linux
against a fake ADO connection (`tests/agent/fakeado.py`) that records every statement
and parameter and fails on demand; those tests prove the statements it sends and how
it reacts, not what the engine does with them.

UNVERIFIED, each isolated in one named place so a site test can correct it:
- the VFP error numbers and texts the provider reports for locks, exclusive use,
  missing files and damaged tables, and whether they arrive in ADO's `NativeError`
  (`errors.LOCK_ERRORS`, `DAMAGE_ERRORS`, `UNREACHABLE_ERRORS`, `vfp_error_number`);
- `RECNO()` in an UPDATE/DELETE WHERE clause, the affected-row count the provider
  reports for them (the store copes with -1 by re-reading), `ORDER BY <n>` and recall
  through `EXECSCRIPT()` with parameters (`statements.py`);
- the Python types the provider returns for N, Y, D, T fields, and the 1899-12-30
  empty date (`values.py`); the parameter types adodbapi binds without provider
  metadata: ints as 32-bit integers, dates as ISO strings (`connection.py`);
- locking semantics through the provider, and over SMB when the data is on a share
  (run the agent on the file server; see docs/agent-install.md);
- that Rushmore uses the index for `==` lookups, which the sampled lookups in
  `check()` rely on to catch a stale index.

One statement per call: a store call sends at most one statement that writes, so a
failure leaves either the whole change or nothing, and the core's journal decides what
happens next. Updates and deletes are compare-and-set (`WHERE RECNO() = ? AND <the
expected values>`), and refuse a row carrying someone else's object lock (`LCKSTAT`).
"""

from sagepro_agent.store.vfpoledb.store import VfpOleDbStore, VfpOleDbTable

__all__ = ["VfpOleDbStore", "VfpOleDbTable"]
