"""The production store against a fake ADO connection (tests/agent/fakeado.py).

These tests pin the statements the store sends and how it reacts to the provider; they
cannot show what the real VFP engine does with them (see the store's docstring).
"""

import json
import sys
import threading
import types
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from sagepro_agent import layouts
from sagepro_agent.store import base
from sagepro_agent.store.base import CasMiss, Locked, TableDamaged, Unavailable
from sagepro_agent.store.vfpoledb import VfpOleDbStore, connection, errors
from sagepro_agent.store.vfpoledb import store as store_module
from sagepro_agent.wire import Request
from tests.agent.fakeado import FakeDatabase

INVOICE_FIELDS = ", ".join(name for name, _ in layouts.TABLES["invoices"].columns)
INVOICE_REF = len(layouts.TABLES["invoices"].columns) + 1
SELECT_INVOICES = (
    f"SELECT {INVOICE_FIELDS}, RECNO() AS _ref, DELETED() AS _del FROM ARMAST01"
)
SESSION = [
    "SET DELETED OFF",
    "SET REPROCESS TO 2 SECONDS",
    "SET EXCLUSIVE OFF",
    "SET NULL OFF",
    "SET MULTILOCKS ON",
]


@pytest.fixture
def db():
    db = FakeDatabase()
    for name in ("customers", "invoices", "receipts", "receipt_lines", "counters"):
        db.create(name)
    invoices = db.tables["ARMAST01"]
    invoices.add(
        INVNO="     10001",
        CUSTNO="ACME  ",
        INVDTE=date(2025, 5, 1),
        INVAMT=Decimal("100.00"),
        PAIDAMT=Decimal("0.00"),
        BALANCE=Decimal("100.00"),
    )
    invoices.add(
        INVNO="     10002",
        CUSTNO="ACME  ",
        INVDTE=date(2025, 5, 2),
        INVAMT=Decimal("50.00"),
        BALANCE=Decimal("50.00"),
    )
    invoices.add(
        INVNO="     10003", CUSTNO="ZZTOP ", INVAMT=Decimal("7.00"), deleted=True
    )
    return db


@pytest.fixture
def store(db, tmp_path):
    store = VfpOleDbStore(tmp_path, user="AGNT", connect=db.connect, reprocess=1.5)
    yield store
    store.close()


@pytest.fixture
def invoices(store, db):
    table = store.table("01", "invoices")
    db.clear()
    return table


def test_it_implements_the_store_interface(store, invoices):
    assert isinstance(store, base.Store)
    assert isinstance(invoices, base.Table)
    assert invoices.fields["INVAMT"] == base.FieldSpec("INVAMT", "N", 14, 2)


def test_it_opens_one_connection_with_the_session_settings(store, db, tmp_path):
    store.table("01", "invoices").get(1)
    store.table("01", "invoices").get(2)
    assert db.connection_strings == [
        f"Provider=VFPOLEDB.1;Data Source={tmp_path};Collating Sequence=MACHINE;"
        "Exclusive=No"
    ]
    assert db.sql()[:5] == SESSION
    assert db.sql().count("SET DELETED OFF") == 1


def test_opening_a_table_checks_its_fields_without_reading_rows(store, db):
    store.table("01", "invoices")
    assert db.statements[-1] == (f"SELECT {INVOICE_FIELDS} FROM ARMAST01 WHERE .F.", [])


def test_find_sends_one_parameterised_select(invoices, db):
    rows = invoices.find({"INVNO": "     10001"})
    assert db.statements == [
        (
            f"{SELECT_INVOICES} WHERE INVNO == ? AND NOT DELETED() ORDER BY {INVOICE_REF}",
            ["     10001"],
        )
    ]
    [row] = rows
    assert row.ref == 1 and row.deleted is False
    assert row["INVNO"] == "     10001"
    assert row["CUSTNO"] == "ACME  "
    assert row["INVAMT"] == Decimal("100.00")
    assert row["INVDTE"] == date(2025, 5, 1)
    assert row["LCKDATE"] is None  # empty: came back as ADO's 1899-12-30
    assert set(row.values) == set(invoices.fields)


def test_find_compares_keys_exactly(invoices):
    # Under VFP's default SET ANSI OFF, `=` would let "     1000" match "     10001".
    assert invoices.find({"INVNO": "     1000"}) == []
    assert invoices.find({"INVNO": "10001"}) == []
    assert [r.ref for r in invoices.find({"CUSTNO": "ACME  "})] == [1, 2]


def test_deleted_rows_are_found_only_when_asked(invoices, db):
    assert invoices.find({"CUSTNO": "ZZTOP "}) == []
    [row] = invoices.find({"CUSTNO": "ZZTOP "}, include_deleted=True)
    assert row.ref == 3 and row.deleted is True
    assert db.statements[-1] == (
        f"{SELECT_INVOICES} WHERE CUSTNO == ? ORDER BY {INVOICE_REF}",
        ["ZZTOP "],
    )


def test_rows_scans_in_record_order(invoices, db):
    assert [r.ref for r in invoices.rows()] == [1, 2]
    assert [r.ref for r in invoices.rows(include_deleted=True)] == [1, 2, 3]
    assert db.sql() == [
        f"{SELECT_INVOICES} WHERE NOT DELETED() ORDER BY {INVOICE_REF}",
        f"{SELECT_INVOICES} ORDER BY {INVOICE_REF}",
    ]


def test_get_reads_one_record_deleted_or_not(invoices, db):
    assert invoices.get(3).deleted is True
    assert db.statements == [
        (f"{SELECT_INVOICES} WHERE RECNO() = ? ORDER BY {INVOICE_REF}", [3])
    ]
    assert invoices.get(4) is None
    assert invoices.get(0) is None


def test_append_inserts_with_parameters_and_reads_the_record_back(store, db):
    receipts = store.table("01", "receipts")
    db.clear()
    row = receipts.append(
        {
            "RCPTNO": "         7",
            "CUSTNO": "ACME  ",
            "DTEPAID": date(2025, 5, 14),
            "AMOUNT": Decimal("150"),
            "REFNO": "txn-1",
            "CREATED": None,
        }
    )
    insert, read_back = db.statements
    assert insert == (
        "INSERT INTO ARCASH01 (RCPTNO, CUSTNO, DTEPAID, AMOUNT, REFNO, CREATED) "
        "VALUES (?, ?, ?, ?, ?, {/:})",
        [
            "         7",
            "ACME  ",
            date(2025, 5, 14),
            Decimal("150.00"),
            "txn-1".ljust(40),
        ],
    )
    assert read_back[0].endswith(
        "FROM ARCASH01 WHERE RCPTNO == ? AND CUSTNO == ? AND DTEPAID = ? AND AMOUNT = ? "
        "AND REFNO == ? AND NOT DELETED() ORDER BY 18"
    )
    assert row.ref == 1
    assert row["AMOUNT"] == Decimal("150.00")
    assert row["APPLIED"] == Decimal("0.00")  # not given: blank
    assert row["CREATED"] is None
    assert row["REFNO"] == "txn-1".ljust(40)


def test_append_returns_the_new_record_when_an_identical_one_exists(store, db):
    lines = store.table("01", "receipt_lines")
    first = lines.append({"RCPTNO": "         1", "INVNO": "     10001"})
    second = lines.append({"RCPTNO": "         1", "INVNO": "     10001"})
    assert (first.ref, second.ref) == (1, 2)


def test_update_is_a_compare_and_set_on_the_record(invoices, db):
    row = invoices.update(
        1,
        {
            "PAIDAMT": Decimal("40"),
            "BALANCE": Decimal("60"),
            "LCKSTAT": "L",
            "LCKUSER": "AGNT",
        },
        expect={"INVNO": "     10001", "PAIDAMT": Decimal("0"), "LCKSTAT": " "},
    )
    assert db.statements[0] == (
        "UPDATE ARMAST01 SET PAIDAMT = ?, BALANCE = ?, LCKSTAT = ?, LCKUSER = ? "
        "WHERE RECNO() = ? AND NOT DELETED() AND INVNO == ? AND PAIDAMT = ? "
        "AND LCKSTAT == ? AND (EMPTY(LCKSTAT) OR LCKUSER == ?)",
        [
            Decimal("40.00"),
            Decimal("60.00"),
            "L",
            "AGNT",
            1,
            "     10001",
            Decimal("0.00"),
            " ",
            "AGNT",
        ],
    )
    assert len(db.writes()) == 1
    assert row["PAIDAMT"] == Decimal("40.00") and row["BALANCE"] == Decimal("60.00")
    assert row["LCKSTAT"] == "L"


def test_update_refuses_a_changed_row_and_writes_nothing(invoices, db):
    with pytest.raises(CasMiss) as caught:
        invoices.update(
            1,
            {"PAIDAMT": Decimal("40")},
            expect={"INVNO": "     10001", "PAIDAMT": Decimal("5")},
        )
    assert caught.value.current.ref == 1
    assert caught.value.current["PAIDAMT"] == Decimal("0.00")
    assert "PAIDAMT" in str(caught.value)
    assert db.tables["ARMAST01"].record(1)["PAIDAMT"] == Decimal("0.00")
    assert len(db.writes()) == 1


def test_update_of_a_deleted_or_missing_record_is_a_cas_miss(invoices):
    with pytest.raises(CasMiss) as deleted:
        invoices.update(3, {"PAIDAMT": Decimal("1")}, expect={"INVNO": "     10003"})
    assert deleted.value.current.deleted is True
    with pytest.raises(CasMiss) as missing:
        invoices.update(9, {"PAIDAMT": Decimal("1")}, expect={"INVNO": "     10009"})
    assert missing.value.current is None


def test_a_row_open_in_sage_is_locked_for_the_agent(invoices, db):
    db.tables["ARMAST01"].record(2).update(LCKSTAT="L", LCKUSER="JOE ")
    with pytest.raises(Locked, match="open in Sage Pro by user JOE"):
        invoices.update(2, {"PAIDAMT": Decimal("1")}, expect={"INVNO": "     10002"})
    assert db.tables["ARMAST01"].record(2)["PAIDAMT"] == Decimal(0)
    # Its own marker does not stop the agent.
    db.tables["ARMAST01"].record(2).update(LCKUSER="AGNT")
    row = invoices.update(2, {"PAIDAMT": Decimal("1")}, expect={"INVNO": "     10002"})
    assert row["PAIDAMT"] == Decimal("1.00")


def test_set_deleted_deletes_with_compare_and_set(invoices, db):
    row = invoices.set_deleted(2, True, expect={"INVNO": "     10002"})
    assert row.deleted is True
    assert db.statements[0] == (
        "DELETE FROM ARMAST01 WHERE RECNO() = ? AND INVNO == ? "
        "AND (EMPTY(LCKSTAT) OR LCKUSER == ?)",
        [2, "     10002", "AGNT"],
    )
    with pytest.raises(CasMiss):
        invoices.set_deleted(1, True, expect={"INVNO": "     10002"})
    assert db.tables["ARMAST01"].deleted[0] is False


def test_recall_runs_a_script_whose_values_are_parameters(invoices, db):
    row = invoices.set_deleted(3, False, expect={"INVNO": "     10003"})
    assert row.deleted is False and db.tables["ARMAST01"].deleted[2] is False
    sql, params = db.statements[0]
    assert sql == "EXECSCRIPT(?, ?, ?, ?)"
    script, ref, user, invno = params
    assert (ref, user, invno) == (3, "AGNT", "     10003")
    assert "10003" not in script and "AGNT" not in script
    assert (
        "IF DELETED() AND INVNO == tv1 AND (EMPTY(LCKSTAT) OR LCKUSER == tcUser)"
        in (script)
    )


def test_recall_of_a_locked_record_is_locked(invoices, db):
    db.lock_record("ARMAST01", 3)
    with pytest.raises(Locked, match="could not be locked in time"):
        invoices.set_deleted(3, False, expect={"INVNO": "     10003"})
    assert db.tables["ARMAST01"].deleted[2] is True


@pytest.mark.parametrize(
    ("number", "text", "expected"),
    [
        (3, "File is in use.", Locked),
        (108, "File is in use by another user.", Locked),
        (109, "Record is in use by another user.", Locked),
        (110, "File must be opened exclusively.", Locked),
        (1705, "File access is denied.", Locked),
        (2024, "A sharing violation occurred.", Locked),
        (1, "File 'armast01.dbf' does not exist.", Unavailable),
        (202, "Invalid path or file name.", Unavailable),
        (1104, "Error reading file.", Unavailable),
        (114, "Index does not match the table.", TableDamaged),
        (2091, 'Table "armast01" has become corrupted.', TableDamaged),
        (1707, "Structural .CDX file is not found.", TableDamaged),
        (10, "Syntax error.", Unavailable),
    ],
)
@pytest.mark.parametrize("numbers_in_errors", [True, False])
def test_provider_errors_become_store_errors(
    tmp_path, number, text, expected, numbers_in_errors
):
    db = FakeDatabase(numbers_in_errors=numbers_in_errors)
    db.create("invoices").add(INVNO="     10001", CUSTNO="SECRET")
    store = VfpOleDbStore(tmp_path, user="AGNT", connect=db.connect)
    invoices = store.table("01", "invoices")
    db.fail(r"^UPDATE ARMAST01", number, text)
    with pytest.raises(base.StoreError) as caught:
        invoices.update(1, {"PAIDAMT": Decimal("1")}, expect={"CUSTNO": "SECRET"})
    assert type(caught.value) is expected
    message = str(caught.value)
    assert "ARMAST01 (invoices, company 01): update of record 1" in message
    if numbers_in_errors or number != 10:
        assert f"VFP error {number}" in message
    assert text.rstrip(".") in message
    assert "SECRET" not in message  # the parameters never reach the error text
    assert db.tables["ARMAST01"].record(1)["PAIDAMT"] == Decimal(0)


def test_errors_are_classified_from_adodbapi_text_alone():
    # No ADO Errors collection to read (a dead connection): the message adodbapi
    # builds from the COM error still names the VFP text.
    text = (
        "(-2147352567, 'Exception occurred.', (0, 'Microsoft OLE DB Provider for "
        "Visual FoxPro', 'File is in use by another user.', None, 0, -2147467259), "
        "None)\nCommand:\nUPDATE ARMAST01 SET ...\nParameters:\n['SECRET']"
    )
    failure = errors.classify(Exception(text), None, "ARMAST01 (invoices, company 01)")
    assert isinstance(failure, Locked)
    assert "VFP error 108" in str(failure)
    assert "SECRET" not in str(failure)


def test_a_dropped_connection_is_unavailable_then_reopened(invoices, db):
    db.drop_connections()
    with pytest.raises(Unavailable, match="not allowed when the object is closed"):
        invoices.get(1)
    assert invoices.get(1).ref == 1
    assert len(db.connection_strings) == 2
    assert db.sql()[1:6] == SESSION  # the new connection got its settings


def test_a_network_error_drops_the_connection(invoices, db):
    db.fail(r"^SELECT", 1104, "Error reading file.", drop=True)
    with pytest.raises(Unavailable, match="cannot be reached"):
        invoices.find({"INVNO": "     10001"})
    assert [r.ref for r in invoices.find({"INVNO": "     10001"})] == [1]
    assert len(db.connection_strings) == 2


def test_a_lock_error_keeps_the_connection(invoices, db):
    db.lock_record("ARMAST01", 1)
    with pytest.raises(Locked, match="VFP error 109"):
        invoices.update(1, {"PAIDAMT": Decimal("1")}, expect={"INVNO": "     10001"})
    assert invoices.get(1)["PAIDAMT"] == Decimal("0.00")
    assert len(db.connection_strings) == 1


def test_a_lock_mid_receipt_leaves_each_call_whole_and_nothing_more(store, db):
    """One statement per call: the core's journal, not the store, decides what
    happens to the receipt after a 423; the store neither retries nor undoes."""
    receipts = store.table("01", "receipts")
    lines = store.table("01", "receipt_lines")
    invoices = store.table("01", "invoices")
    db.lock_record("ARMAST01", 2)  # a Sage user is editing invoice 10002
    db.clear()
    receipts.append(
        {"RCPTNO": "         1", "CUSTNO": "ACME  ", "AMOUNT": Decimal("60")}
    )
    lines.append(
        {"RCPTNO": "         1", "INVNO": "     10001", "PAIDAMT": Decimal("40")}
    )
    lines.append(
        {"RCPTNO": "         1", "INVNO": "     10002", "PAIDAMT": Decimal("20")}
    )
    invoices.update(1, {"PAIDAMT": Decimal("40")}, expect={"INVNO": "     10001"})
    with pytest.raises(Locked):
        invoices.update(2, {"PAIDAMT": Decimal("20")}, expect={"INVNO": "     10002"})
    writes = [sql.split(" (")[0].split(" SET")[0] for sql, _ in db.writes()]
    assert writes == [
        "INSERT INTO ARCASH01",
        "INSERT INTO ARCAPP01",
        "INSERT INTO ARCAPP01",
        "UPDATE ARMAST01",
        "UPDATE ARMAST01",
    ]
    armast = db.tables["ARMAST01"]
    assert armast.record(1)["PAIDAMT"] == Decimal("40")
    assert armast.record(2)["PAIDAMT"] == Decimal("0")
    assert len(db.tables["ARCASH01"].records) == 1
    assert len(db.tables["ARCAPP01"].records) == 2


def test_a_held_header_lock_refuses_the_append(store, db):
    receipts = store.table("01", "receipts")
    db.lock_header("ARCASH01")
    with pytest.raises(Locked, match="VFP error 108"):
        receipts.append({"RCPTNO": "         1"})
    assert db.tables["ARCASH01"].records == []


def test_money_is_decimal_both_ways(invoices, db):
    with pytest.raises(TypeError, match="float"):
        invoices.update(1, {"PAIDAMT": 0.1}, expect={"INVNO": "     10001"})
    with pytest.raises(TypeError, match="float"):
        invoices.find({"BALANCE": 100.0})
    assert db.statements == []
    row = invoices.update(
        1, {"PAIDAMT": Decimal("12.345")}, expect={"INVNO": "     10001"}
    )
    assert db.statements[0][1][0] == Decimal("12.35")  # ROUND_HALF_UP, not half-even
    assert row["PAIDAMT"] == Decimal("12.35")
    # The provider hands N fields back as float: read through str(), not the binary.
    db.tables["ARMAST01"].record(1)["BALANCE"] = 0.1 + 0.2
    assert invoices.get(1)["BALANCE"] == Decimal("0.30")
    with pytest.raises(ValueError, match="does not fit"):
        invoices.update(1, {"PAIDAMT": Decimal("1e12")}, expect={"INVNO": "     10001"})
    floats = [p for _, params in db.statements for p in params if isinstance(p, float)]
    assert floats == []


def test_empty_dates_are_none_and_never_a_parameter(store, db):
    customers = store.table("01", "customers")
    db.tables["ARCUST01"].add(CUSTNO="ACME  ")
    db.clear()
    [row] = customers.find({"CUSTNO": "ACME  "})
    assert row["LASTPAY"] is None  # came back as ADO's 1899-12-30
    row = customers.update(
        1, {"LASTPAY": date(2025, 5, 14)}, expect={"CUSTNO": "ACME  ", "LASTPAY": None}
    )
    assert row["LASTPAY"] == date(2025, 5, 14)
    sql, params = db.statements[1]
    assert "AND EMPTY(LASTPAY)" in sql
    assert params[:3] == [date(2025, 5, 14), 1, "ACME  "]
    customers.update(1, {"LASTPAY": None}, expect={"CUSTNO": "ACME  "})
    assert db.statements[-2][0].startswith("UPDATE ARCUST01 SET LASTPAY = {} WHERE")
    assert customers.get(1)["LASTPAY"] is None


def test_a_value_too_wide_is_refused_before_anything_is_sent(invoices, db):
    with pytest.raises(ValueError, match=r"ARMAST01.PONUM is C\(20\)"):
        invoices.update(1, {"PONUM": "x" * 21}, expect={"INVNO": "     10001"})
    assert db.statements == []


def test_a_provider_without_row_counts_still_gets_cas_right(tmp_path):
    db = FakeDatabase(report_rowcount=False)
    db.create("invoices").add(INVNO="     10001", PAIDAMT=Decimal("0"))
    invoices = VfpOleDbStore(tmp_path, user="AGNT", connect=db.connect).table(
        "01", "invoices"
    )
    row = invoices.update(
        1, {"PAIDAMT": Decimal("5")}, expect={"PAIDAMT": Decimal("0")}
    )
    assert row["PAIDAMT"] == Decimal("5.00")
    with pytest.raises(CasMiss):
        invoices.update(1, {"PAIDAMT": Decimal("9")}, expect={"PAIDAMT": Decimal("0")})


def test_the_site_mapping_renames_tables_and_fields(db, tmp_path):
    db.create("invoices", physical="AR\\INVOICES01")
    table = db.tables["AR\\INVOICES01"]
    table.specs["INVNUM"] = table.specs.pop("INVNO")
    table.add(INVNUM="     10001")
    store = VfpOleDbStore(
        tmp_path,
        user="AGNT",
        connect=db.connect,
        tables={"invoices": "AR\\INVOICES{co}"},
        fields={"invoices": {"INVNO": "INVNUM"}},
    )
    [row] = store.table("01", "invoices").find({"INVNO": "     10001"})
    assert row["INVNO"] == "     10001"  # canonical name for the core
    assert "FROM AR\\INVOICES01 WHERE INVNUM == ?" in db.sql()[-1]


def test_a_wrong_field_name_in_the_mapping_is_unavailable_at_open(db, tmp_path):
    store = VfpOleDbStore(
        tmp_path,
        user="AGNT",
        connect=db.connect,
        fields={"invoices": {"PONUM": "PONUMBER"}},
    )
    with pytest.raises(Unavailable, match="Column 'PONUMBER' is not found"):
        store.table("01", "invoices")


def test_bad_settings_are_refused_with_every_mistake(tmp_path):
    with pytest.raises(ValueError) as caught:
        VfpOleDbStore(
            tmp_path,
            user="TOOLONG",
            tables={"invoices": "ARMAST{co}; DROP", "nonsense": "X"},
            fields={"invoices": {"NOPE": "X", "INVNO": "bad name"}},
        )
    message = str(caught.value)
    for part in (
        "user 'TOOLONG'",
        "tables.invoices",
        "tables.nonsense",
        "fields.invoices.NOPE",
        "fields.invoices.INVNO",
    ):
        assert part in message


def test_a_missing_provider_or_folder_is_unavailable(db, tmp_path):
    db.connect_error = RuntimeError(
        "Provider cannot be found. It may not be properly installed."
    )
    store = VfpOleDbStore(tmp_path, user="AGNT", connect=db.connect)
    with pytest.raises(Unavailable, match="32-bit"):
        store.table("01", "invoices")
    calls = []
    gone = VfpOleDbStore(tmp_path / "offline", user="AGNT", connect=calls.append)
    with pytest.raises(Unavailable, match="cannot be reached"):
        gone.table("01", "invoices")
    assert calls == []


def test_every_thread_shares_one_connection_on_the_provider_thread(store, db):
    """COM objects belong to the thread that made them: request threads come and go,
    so all statements run on the store's one provider thread."""
    store.table("01", "invoices").get(1)
    workers = [
        threading.Thread(target=lambda: store.table("01", "invoices").get(1))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(db.connections) == 1
    assert len(db.threads) == 1 and db.threads.pop().startswith("vfpoledb ")
    store.close()
    assert db.connections[0].closed
    assert store.table("01", "invoices").get(1).ref == 1  # reopens after close
    assert len(db.connections) == 2


def test_a_provider_that_does_not_answer_is_unavailable(store, db):
    invoices = store.table("01", "invoices")
    release = threading.Event()
    db.on_statement = lambda sql: sql.startswith("UPDATE") and release.wait(5)
    store._worker.timeout = 0.2
    with pytest.raises(Unavailable, match="did not answer within 0.2 s; the outcome"):
        invoices.update(1, {"PAIDAMT": Decimal("1")}, expect={"INVNO": "     10001"})
    release.set()
    store._worker.timeout = 5
    # The late update went through: the outcome really was unknown.
    assert invoices.get(1)["PAIDAMT"] == Decimal("1.00")


def write_dbf_header(path, count):
    path.write_bytes(
        bytes([0x30, 125, 5, 14]) + count.to_bytes(4, "little") + bytes(24)
    )


def test_check_compares_count_star_with_the_header(store, db, tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "_integrity_module", lambda: None)
    write_dbf_header(tmp_path / "ARMAST01.DBF", 3)
    assert store.check("01", "invoices") == []
    assert "file-level checks not run" in store.not_checked[("01", "invoices")][0]
    assert "SELECT COUNT(*) AS n FROM ARMAST01" in db.sql()
    # Sampled lookups by each simple tag key go through the provider.
    assert (
        "SELECT RECNO() AS _ref FROM ARMAST01 WHERE CUSTNO == ? AND INVNO == ?"
        in db.sql()
    )
    write_dbf_header(tmp_path / "ARMAST01.DBF", 4)
    [problem] = store.check("01", "invoices")
    assert (
        "COUNT(*) through the provider gives 3 records, the DBF header says 4"
        in problem
    )


def test_check_runs_the_file_level_integrity_check(store, tmp_path, monkeypatch):
    calls = []

    class Integrity:
        @staticmethod
        def check_table(path, layout_tags=None, sample=100):
            calls.append((path, layout_tags, sample))
            return ["CDX tag INVNO: SEEK misses records [3]"]

    monkeypatch.setattr(store_module, "_integrity_module", lambda: Integrity)
    monkeypatch.setattr(store_module, "RECHECK_DELAY", 0)
    write_dbf_header(tmp_path / "ARMAST01.DBF", 3)
    assert store.check("01", "invoices", sample=None) == [
        "CDX tag INVNO: SEEK misses records [3]"
    ]
    expected = (
        str(tmp_path / "ARMAST01.DBF"),
        {"INVNO": "INVNO", "CUSTNO": "CUSTNO+INVNO"},
        None,
    )
    assert calls == [expected, expected]  # a finding is confirmed once before reporting


def test_a_finding_that_clears_at_once_is_an_append_in_progress(
    store, db, tmp_path, monkeypatch
):
    findings = [["SIZE 140 bytes past the header count (3 records)"], []]

    class Integrity:
        @staticmethod
        def check_table(path, layout_tags=None, sample=100):
            return findings.pop(0)

    monkeypatch.setattr(store_module, "_integrity_module", lambda: Integrity)
    monkeypatch.setattr(store_module, "RECHECK_DELAY", 0)
    write_dbf_header(tmp_path / "ARMAST01.DBF", 3)
    assert store.check("01", "invoices") == []
    assert findings == []


def test_count_star_between_two_header_reads_is_a_concurrent_append(
    store, db, tmp_path, monkeypatch
):
    monkeypatch.setattr(store_module, "_integrity_module", lambda: None)
    header = tmp_path / "ARMAST01.DBF"
    write_dbf_header(header, 2)
    real_execute = store.execute

    def execute(sql, params, where, *, fetch):
        result = real_execute(sql, params, where, fetch=fetch)
        if sql.startswith("SELECT COUNT(*)"):
            write_dbf_header(header, 4)  # Sage users appended meanwhile
        return result

    monkeypatch.setattr(store, "execute", execute)
    assert store.check("01", "invoices") == []  # 2 <= 3 <= 4


def test_check_without_the_files_says_what_it_did_not_check(store):
    assert store.check("01", "invoices") == []
    assert "not reachable as a file" in store.not_checked[("01", "invoices")][0]


def test_datetimes_are_naive_utc(store, db):
    receipts = store.table("01", "receipts")
    moment = datetime(2025, 5, 14, 10, 0, tzinfo=timezone(timedelta(hours=-7)))
    row = receipts.append({"RCPTNO": "         1", "CREATED": moment})
    assert row["CREATED"] == datetime(2025, 5, 14, 17, 0)  # noqa: DTZ001
    assert row["CREATED"] == moment.astimezone(UTC).replace(tzinfo=None)


def test_check_runs_the_real_file_check_on_real_foxpro_files(fixture_company):
    """The file-level half of check() reads the DBF and CDX themselves (here a fixture
    company's), so it works the same on a site whatever the provider does."""
    folder, _ = fixture_company
    count = store_module.read_header_count(folder / "ARMAST01.DBF")
    db = FakeDatabase()
    fake = db.create("invoices")
    for number in range(count):
        fake.add(INVNO=str(10001 + number).rjust(10))
    store = VfpOleDbStore(folder, user="AGNT", connect=db.connect)
    assert store.check("01", "invoices") == []
    assert store.not_checked[("01", "invoices")] == []
    with open(folder / "ARMAST01.DBF", "ab") as dbf:
        dbf.write(b" " * 200)  # an append killed before its header update
    problems = store.check("01", "invoices")
    assert any("past the header count" in p for p in problems), problems


def test_the_site_mapping_opens_this_store(tmp_path):
    """`store = "vfpoledb"` in a site mapping builds this store with the mapping's
    table and field names; nothing is opened until the first call."""
    from sagepro_agent.agent import open_store
    from sagepro_agent.config import load

    (tmp_path / "data").mkdir()
    site = tmp_path / "site.toml"
    site.write_text(
        "[sage]\n"
        'store = "vfpoledb"\n'
        f'data = "{(tmp_path / "data").as_posix()}"\n'
        'companies = ["01"]\n'
        'receipt_mode = "direct"\n'
        "reprocess = 3\n"
        "[agent]\n"
        'user = "PTAG"\n'
        f'journal = "{(tmp_path / "journal.sqlite3").as_posix()}"\n'
        'time_zone = "America/Chicago"\n'
        "[tables.receipts]\n"
        'physical = "ARCSH{co}"\n'
        "[tables.receipts.fields]\n"
        'REFNO = "CHECKNO"\n'
    )
    store = open_store(load(site))
    assert isinstance(store, VfpOleDbStore)
    shape = store.shape("01", "receipts")
    assert shape.physical == "ARCSH01"
    assert shape.column("REFNO").physical == "CHECKNO"
    assert (store.user, store.reprocess_seconds) == ("PTAG", 3)
    assert not store._worker.running


def fake_copy_of(memory_store):
    """A FakeDatabase holding every row of a MemoryStore (company 01)."""
    db = FakeDatabase()
    for name in layouts.TABLES:
        fake = db.create(name)
        for row in memory_store.table("01", name).rows(include_deleted=True):
            fake.add(deleted=row.deleted, **dict(row.values))
    return db


def test_the_gateway_core_posts_a_receipt_through_this_store(tmp_path):
    """The whole receipt saga of the core (journal steps S1-S6) over this store and
    the fake provider: the same answers as on the other stores, every value a
    parameter, the invariants intact."""
    from sagepro_agent.wire import Request
    from tests.agent.test_core_support import (
        add_customer,
        add_invoice,
        check_invariants,
        make_store,
        new_agent,
        receipt,
    )

    memory = make_store("memory", tmp_path / "unused")
    add_customer(memory)
    add_invoice(memory, "TEST", "90001", "100.00")
    add_invoice(memory, "TEST", "90002", "250.00", "50.00")
    db = fake_copy_of(memory)
    store = VfpOleDbStore(tmp_path, user="AGNT", connect=db.connect)
    agent = new_agent(tmp_path, store)
    try:
        body = receipt("150.00", apps=[("90001", "100.00"), ("90002", "50")])
        request = Request(
            "POST",
            "/cash-receipts",
            (),
            {"Idempotency-Key": "k1"},
            json.dumps(body).encode(),
        )
        response = agent.gateway.handle(request)
        assert response.status == 201, response.body
        assert response.body["receipt_no"] == "000001"
        assert response.body["applied_amount"] == "150.00"
        replay = agent.gateway.handle(request)
        assert replay.status == 200
        check_invariants(store)
        [invoice] = store.table("01", "invoices").find({"INVNO": "     90002"})
        assert invoice["PAIDAMT"] == Decimal("100.00")
        assert invoice["BALANCE"] == Decimal("150.00")
        assert len(db.tables["ARCASH01"].records) == 1
        assert len(db.tables["ARCAPP01"].records) == 2
        writes = [sql.split(" ")[0] for sql, _ in db.writes()]
        assert writes.count("INSERT") == 3  # header and two lines, once each
        floats = [p for _, ps in db.statements for p in ps if isinstance(p, float)]
        assert floats == []
    finally:
        agent.close()


def test_a_provider_lock_mid_receipt_is_423_and_the_retry_finishes_it(tmp_path):
    """VFP error 109 on the second invoice's update: the core answers 423, and the
    same request repeated finishes the receipt once, without a second header."""
    from tests.agent.test_core_support import (
        add_customer,
        add_invoice,
        check_invariants,
        make_store,
        new_agent,
        receipt,
    )

    memory = make_store("memory", tmp_path / "unused")
    add_customer(memory)
    add_invoice(memory, "TEST", "90001", "100.00")
    add_invoice(memory, "TEST", "90002", "250.00", "50.00")
    db = fake_copy_of(memory)
    store = VfpOleDbStore(tmp_path, user="AGNT", connect=db.connect)
    agent = new_agent(tmp_path, store)
    try:
        db.fail(r"^UPDATE ARMAST01", 109, "Record is in use by another user.", nth=2)
        body = json.dumps(
            receipt("150.00", apps=[("90001", "100.00"), ("90002", "50")])
        ).encode()
        request = Request("POST", "/cash-receipts", (), {"Idempotency-Key": "k1"}, body)
        locked = agent.gateway.handle(request)
        assert locked.status == 423, locked.body
        assert locked.body["code"] == "RECORD_LOCKED"
        done = agent.gateway.handle(request)
        assert done.status in (200, 201), done.body
        assert done.body["receipt_no"] == "000001"
        assert len(db.tables["ARCASH01"].records) == 1
        assert len(db.tables["ARCAPP01"].records) == 2
        check_invariants(store)
    finally:
        agent.close()


def test_the_default_connect_uses_adodbapi_in_autocommit(monkeypatch):
    """The real connect path, with stand-ins for adodbapi and pythoncom."""
    calls = []
    adodbapi = types.ModuleType("adodbapi")
    adodbapi.connect = lambda *a, **k: calls.append((a, k)) or "connection"
    ado_consts = types.ModuleType("adodbapi.ado_consts")
    ado_consts.adInteger, ado_consts.adBigInt = 3, 20
    apibase = types.ModuleType("adodbapi.apibase")
    apibase.typeMap = {int: 20}
    adodbapi.ado_consts, adodbapi.apibase = ado_consts, apibase
    pythoncom = types.ModuleType("pythoncom")
    pythoncom.CoInitialize = lambda: calls.append("CoInitialize")
    for name, module in {
        "adodbapi": adodbapi,
        "adodbapi.ado_consts": ado_consts,
        "adodbapi.apibase": apibase,
        "pythoncom": pythoncom,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)

    text = connection.connection_string(r"D:\Sage 100%\ProData;x")
    assert text == (
        'Provider=VFPOLEDB.1;Data Source="D:\\Sage 100%\\ProData;x";'
        "Collating Sequence=MACHINE;Exclusive=No"
    )
    assert connection.adodbapi_connect(text) == "connection"
    assert calls[0] == "CoInitialize"
    (args, kwargs) = calls[1]
    assert args == (text.replace("%", "%%"),)  # adodbapi %-formats the string
    assert kwargs == {"timeout": 60, "autocommit": True}
    assert apibase.typeMap[int] == 3  # 32-bit integers, not adBigInt


def test_a_key_the_code_page_cannot_hold_finds_nothing_without_asking_the_provider(
    invoices, db
):
    # The provider would turn it into "?" and could match a row holding a real "?".
    assert invoices.find({"INVNO": "😀".rjust(10)}) == []
    assert db.statements == []
