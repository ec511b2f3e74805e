"""The FoxPro fixture store: real DBF/CDX files, locks between processes, compare-and-set,
the watchdog check and the fixture-only repair, and the seed matching the sandbox."""

import datetime
import fcntl
import multiprocessing
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from sagepro_agent.dbf import codec
from sagepro_agent.dbf.integrity import check_table
from sagepro_agent.store import base
from sagepro_agent.store.base import CasMiss, Locked, TableDamaged, Unavailable
from sagepro_agent.store.fixture import FixtureStore, faults, guard, seed
from sagepro_agent.store.fixture.locks import LOCKPOS
from tests.agent.cdxcheck import cdx_keys, index_problems
from tests.agent.conftest import business_today

FORK = multiprocessing.get_context("fork")


class Killed(BaseException):
    """Raised by a FAULT hook: stops a write where a kill would, without a process."""


@pytest.fixture
def kill_at():
    def arm(point, table=None):
        def hook(where, physical):
            if where == point and (table is None or physical == table):
                raise Killed(where)

        faults.FAULT = hook

    yield arm
    faults.FAULT = None


def invoice(store, invno):
    return store.table("01", "invoices").find({"INVNO": invno.rjust(10)})[0]


def receipt(n, **extra):
    return {
        "RCPTNO": f"{n:06d}".rjust(10),
        "CUSTNO": "ACME  ",
        "DTEPAID": datetime.date(2026, 12, 1),
        "AMOUNT": Decimal("10.00"),
        "REFNO": f"TX{n}",
        **extra,
    }


# --- the store interface and the codec ------------------------------------------------


def test_it_implements_the_store_interface(fixture_company):
    _, store = fixture_company
    assert isinstance(store, base.Store)
    assert isinstance(store.table("01", "invoices"), base.Table)
    assert store.table("01", "invoices").fields["INVAMT"] == base.FieldSpec(
        "INVAMT", "N", 14, 2
    )


def test_it_keeps_the_leading_spaces_of_right_justified_keys_in_the_raw_bytes(
    fixture_company,
):
    folder, store = fixture_company
    invoices = store.table("01", "invoices")
    row = invoices.append(
        {"INVNO": "     10047", "CUSTNO": "ACME  ", "INVAMT": Decimal("5")}
    )
    raw = invoices.raw(row.ref)
    f = invoices.header().field("INVNO")
    assert raw[f.offset : f.offset + f.length] == b"     10047"
    # dbflib-seeded rows too, and an independent reader sees the same bytes.
    dbfread = pytest.importorskip("dbfread")
    first = next(iter(dbfread.DBF(str(folder / "ARMAST01.DBF"))))
    assert first["INVNO"] == "     10001"
    assert invoices.find({"INVNO": "10047"}) == []  # byte-exact: unpadded finds nothing


def test_it_quantises_money_half_up_and_refuses_floats(fixture_company):
    _, store = fixture_company
    invoices = store.table("01", "invoices")
    row = invoices.append(
        {"INVNO": "     10090", "CUSTNO": "ACME  ", "INVAMT": Decimal("2.005")}
    )
    f = invoices.header().field("INVAMT")
    assert invoices.raw(row.ref)[f.offset : f.offset + f.length] == b"2.01".rjust(14)
    assert row["INVAMT"] == Decimal("2.01")
    count = invoices.header().reccount
    with pytest.raises(TypeError, match="floats"):
        invoices.append({"INVNO": "     10091", "INVAMT": 2.5})
    with pytest.raises(TypeError, match="floats"):
        invoices.update(row.ref, {"PAIDAMT": 1.0}, expect={"INVNO": "     10090"})
    with pytest.raises(codec.FieldOverflow):
        invoices.append({"INVNO": "     10092", "CUSTNO": "TOOLONGCUST"})
    assert invoices.header().reccount == count
    assert invoices.get(row.ref)["PAIDAMT"] == Decimal("0.00")


def test_it_reads_every_field_type_as_the_store_conventions_say(tmp_path):
    fields = [
        codec.Field("C", "C", 1, 6, 0), codec.Field("N", "N", 7, 8, 2), codec.Field("D", "D", 15, 8, 0),
        codec.Field("T", "T", 23, 8, 0), codec.Field("L", "L", 31, 1, 0), codec.Field("I", "I", 32, 4, 0),
        codec.Field("Y", "Y", 36, 8, 0),
    ]  # fmt: skip
    h = codec.Header(0x30, 1, 33 + 32 * 7, 44, 0, 3, (26, 12, 6), tuple(fields))
    when = datetime.datetime(2026, 12, 6, 17, 3, 11, 120000, tzinfo=datetime.UTC)
    values = {
        "C": " AB",
        "N": "-1.005",
        "D": datetime.date(2026, 2, 28),
        "T": when,
        "L": True,
        "I": -7,
        "Y": Decimal("1.23456"),
    }
    deleted, back = codec.decode_record(h, codec.encode_record(h, values))
    assert not deleted
    assert back == {
        "C": " AB   ",
        "N": Decimal("-1.01"),
        "D": datetime.date(2026, 2, 28),
        "T": when.replace(tzinfo=None),  # stored as UTC, read back naive
        "L": True,
        "I": -7,
        "Y": Decimal("1.2346"),
    }
    _, blank = codec.decode_record(h, codec.encode_record(h, {}))
    assert blank == {
        "C": "      ",
        "N": Decimal("0.00"),
        "D": None,
        "T": None,
        "L": False,
        "I": 0,
        "Y": Decimal("0.0000"),
    }


# --- SEEK -----------------------------------------------------------------------------


def test_seek_agrees_with_a_full_scan(fixture_company):
    _, store = fixture_company
    invoices = store.table("01", "invoices")
    everything = list(invoices.rows(include_deleted=True))
    # Move an invoice to another customer: a key change rebuilds the index.
    moved = invoice(store, "10002")
    invoices.update(moved.ref, {"CUSTNO": "ZEROBL"}, expect={"INVNO": moved["INVNO"]})
    everything = list(invoices.rows(include_deleted=True))
    for custno in {r["CUSTNO"] for r in everything} | {"NOBODY"}:
        for deleted in (False, True):
            scan = [
                r
                for r in everything
                if r["CUSTNO"] == custno and (deleted or not r.deleted)
            ]
            assert invoices.find({"CUSTNO": custno}, include_deleted=deleted) == scan
    for row in everything:
        assert invoices.find({"INVNO": row["INVNO"]}, include_deleted=True) == [row]
        assert invoices.find(
            {"CUSTNO": row["CUSTNO"], "INVNO": row["INVNO"]}, include_deleted=True
        ) == [row]
    assert [r["INVNO"].strip() for r in invoices.find({"CUSTNO": "ZEROBL"})] == [
        "10002",
        "10057",
    ]
    assert (
        invoices.find({"INVNO": "     10059"}) == []
    )  # deleted: only with include_deleted
    # A field no tag covers is a scan; it still answers.
    assert {r["INVNO"].strip() for r in invoices.find({"ARTYPE": "C"})} == {"10058"}


@pytest.mark.slow
def test_seek_reads_a_few_pages_at_100k_rows(tmp_path):
    folder = tmp_path / "big"
    started = time.monotonic()
    seed.create_company(folder, today=datetime.date(2026, 12, 6), rows=100_000)
    assert time.monotonic() - started < 60
    store = FixtureStore(folder)
    invoices = store.table("01", "invoices")
    assert invoices.header().reccount == 100_000
    cdx = invoices._cdxfile()
    assert cdx.seek("INVNO", b"    109999") == [99_999]
    assert cdx.last_pages <= 4
    assert [r.ref for r in invoices.find({"INVNO": "    109999"})] == [99_999]
    assert store.check("01", "invoices") == []
    store.close()


# --- appends, compare-and-set --------------------------------------------------------


def _append_receipts(folder, first, count):
    store = FixtureStore(folder, reprocess=10.0)
    table = store.table("01", "receipts")
    for n in range(first, first + count):
        table.append(receipt(n))
    store.close()


@pytest.mark.slow
def test_appends_from_two_processes_at_once_lose_nothing(fixture_company):
    folder, store = fixture_company
    workers = [
        FORK.Process(target=_append_receipts, args=(folder, start, 15))
        for start in (1, 101)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    table = store.table("01", "receipts")
    numbers = sorted(int(r["RCPTNO"]) for r in table.rows())
    assert numbers == list(range(1, 16)) + list(range(101, 116))
    assert store.check("01", "receipts", sample=None) == []
    indexed = cdx_keys(str(folder / "ARCASH01.DBF"), "RCPTNO")
    assert sorted(recno for _, recno in indexed) == list(range(1, 31))


def test_an_appended_row_is_in_the_index_for_an_independent_reader(fixture_company):
    folder, store = fixture_company
    receipts = store.table("01", "receipts")
    row = receipts.append(receipt(7, CUSTNO="IRONWD"))
    assert receipts.find({"CUSTNO": "IRONWD"}) == [row]  # prefix SEEK on CUSTNO+DTOS()
    assert receipts.find({"RCPTNO": "    000007"}) == [row]
    for tag, key in (
        ("RCPTNO", b"    000007"),
        ("REFNO", b"TX7"),
        ("CUSTDATE", b"IRONWD20261201"),
    ):
        entries = cdx_keys(str(folder / "ARCASH01.DBF"), tag)
        assert (key, row.ref) in [(k.rstrip(b" "), r) for k, r in entries]


def test_every_index_agrees_with_an_independent_reader_after_writes(fixture_company):
    from sagepro_agent.layouts import TABLES, physical_name

    folder, store = fixture_company
    receipts = store.table("01", "receipts")
    receipts.append(receipt(1, CUSTNO="DELTA "))
    lines = store.table("01", "receipt_lines")
    lines.append({"RCPTNO": "    000001", "INVNO": "     10004", "CUSTNO": "DELTA "})
    customers = store.table("01", "customers")
    acme = customers.find({"CUSTNO": "ACME  "})[0]
    customers.update(acme.ref, {"COMPANY": "acme renamed"}, expect={"CUSTNO": "ACME  "})
    moved = invoice(store, "10006")
    store.table("01", "invoices").update(
        moved.ref, {"CUSTNO": "HARBOR"}, expect={"INVNO": moved["INVNO"]}
    )
    problems = []
    for name, layout in TABLES.items():
        path = str(folder / (physical_name(name, "01") + ".DBF"))
        for tag, key in layout.tags:
            problems += index_problems(path, tag, key)
    assert problems == []


def test_update_is_a_compare_and_set(fixture_company):
    _, store = fixture_company
    invoices = store.table("01", "invoices")
    row = invoice(store, "10003")
    before = invoices.raw(row.ref)
    with pytest.raises(CasMiss) as miss:
        invoices.update(
            row.ref,
            {"PAIDAMT": Decimal("1.00")},
            expect={"INVNO": row["INVNO"], "PAIDAMT": Decimal("9.99")},
        )
    assert miss.value.current == row
    assert invoices.raw(row.ref) == before
    new = invoices.update(
        row.ref,
        {"PAIDAMT": row["PAIDAMT"] + 1, "BALANCE": row["BALANCE"] - 1},
        expect={"INVNO": row["INVNO"], "PAIDAMT": row["PAIDAMT"]},
    )
    assert new == invoices.get(row.ref)
    assert new["INVAMT"] - new["PAIDAMT"] == new["BALANCE"]
    with pytest.raises(CasMiss) as gone:
        invoices.update(10_000, {"PAIDAMT": 1}, expect={})
    assert gone.value.current is None


def test_a_stale_record_number_after_a_pack_misses_instead_of_writing_another_invoice(
    fixture_company,
):
    _, store = fixture_company
    invoices = store.table("01", "invoices")
    row = invoice(store, "10030")
    invoices.set_deleted(3, True, expect={"INVNO": "     10003"})
    assert invoices.pack() == 2  # 10003 and the seeded deleted 10059
    with pytest.raises(CasMiss):
        invoices.update(
            row.ref, {"PAIDAMT": Decimal("1")}, expect={"INVNO": row["INVNO"]}
        )
    assert invoice(store, "10030").ref == row.ref - 1
    assert store.check("01", "invoices", sample=None) == []


def test_soft_delete_and_recall_keep_the_row_in_the_index(fixture_company):
    _, store = fixture_company
    invoices = store.table("01", "invoices")
    row = invoice(store, "10004")
    deleted = invoices.set_deleted(row.ref, True, expect={"INVNO": row["INVNO"]})
    assert deleted.deleted and invoices.raw(row.ref)[:1] == b"*"
    assert invoices.find({"INVNO": row["INVNO"]}) == []
    assert invoices.find({"INVNO": row["INVNO"]}, include_deleted=True) == [deleted]
    with pytest.raises(CasMiss):
        invoices.update(row.ref, {"PAIDAMT": 1}, expect={"INVNO": row["INVNO"]})
    invoices.set_deleted(row.ref, False, expect={"INVNO": row["INVNO"]})
    assert invoices.find({"INVNO": row["INVNO"]}) == [row]


# --- locks ----------------------------------------------------------------------------


def _hold_lock(path, offset, ready, release):
    """Another program's lock (POSIX lockf, as a FoxPro-compatible program takes it)."""
    fd = os.open(path, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset, os.SEEK_SET)
    ready.set()
    release.wait(30)
    os.close(fd)


@pytest.mark.slow
@pytest.mark.parametrize("what", ["record", "header"])
def test_a_lock_held_by_another_process_is_423_after_the_bounded_wait_then_succeeds(
    fixture_company, what
):
    folder, store = fixture_company
    invoices = store.table("01", "invoices")
    row = invoice(store, "10001")
    offset = LOCKPOS - (row.ref if what == "record" else 0)
    ready, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(
        target=_hold_lock, args=(str(folder / "ARMAST01.DBF"), offset, ready, release)
    )
    holder.start()
    assert ready.wait(10)

    def write():
        if what == "record":
            return invoices.update(
                row.ref, {"ARSTAT": "X"}, expect={"INVNO": row["INVNO"]}
            )
        return invoices.append({"INVNO": "     20001", "CUSTNO": "ACME  "})

    try:
        started = time.monotonic()
        with pytest.raises(Locked, match="locked"):
            write()
        waited = time.monotonic() - started
        assert 0.45 <= waited < 2.0  # reprocess=0.5 in the fixture
        assert invoice(store, "10001") == row
    finally:
        release.set()
        holder.join(10)
    assert write() is not None


def test_an_object_lock_by_another_user_is_423_and_our_own_mark_is_writable(
    fixture_company,
):
    folder, store = fixture_company
    invoices = store.table("01", "invoices")
    row = invoice(store, "10005")
    joe = FixtureStore(folder, reprocess=0.2, user="JOE")
    joes = joe.table("01", "invoices")
    joes.update(
        row.ref,
        {"LCKSTAT": "L", "LCKUSER": "JOE"},
        expect={"INVNO": row["INVNO"], "LCKSTAT": " "},
    )
    with pytest.raises(Locked, match="JOE"):
        invoices.update(
            row.ref, {"PAIDAMT": Decimal("1")}, expect={"INVNO": row["INVNO"]}
        )
    with pytest.raises(Locked):
        invoices.set_deleted(row.ref, True, expect={"INVNO": row["INVNO"]})
    joes.update(
        row.ref, {"LCKSTAT": " ", "LCKUSER": "    "}, expect={"LCKUSER": "JOE "}
    )
    # The agent marks the row itself (the receipt saga's in-progress marker) and keeps writing it.
    invoices.update(
        row.ref, {"LCKSTAT": "L", "LCKUSER": "AGNT"}, expect={"LCKSTAT": " "}
    )
    done = invoices.update(
        row.ref, {"PAIDAMT": Decimal("1")}, expect={"LCKUSER": "AGNT"}
    )
    assert done["PAIDAMT"] == Decimal("1.00")
    with pytest.raises(Locked, match="AGNT"):
        joes.update(row.ref, {"PAIDAMT": Decimal("2")}, expect={})
    joe.close()


def test_threads_of_one_process_do_not_interleave_writes(fixture_company):
    import threading

    _, store = fixture_company
    table = store.table("01", "receipts")
    errors = []

    def worker(start):
        try:
            for n in range(start, start + 8):
                table.append(receipt(n))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in (1, 101, 201)]
    store.reprocess = table.reprocess = 10.0
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(list(table.rows())) == 24
    assert store.check("01", "receipts", sample=None) == []


# --- unavailable, the guard -----------------------------------------------------------


def test_a_vanished_data_folder_is_unavailable_and_nothing_is_half_written(
    fixture_company,
):
    folder, store = fixture_company
    invoices = store.table("01", "invoices")
    away = folder.with_name("away")
    folder.rename(away)
    with pytest.raises(Unavailable, match="not reachable"):
        store.table("01", "invoices")
    with pytest.raises(Unavailable):
        invoices.append({"INVNO": "     20002"})
    with pytest.raises(Unavailable):
        invoices.find({"INVNO": "     10001"})
    with pytest.raises(Unavailable):
        store.check("01", "invoices")
    away.rename(folder)
    assert store.check("01", "invoices", sample=None) == []
    assert invoices.find({"INVNO": "     20002"}) == []


def test_the_fixture_store_refuses_a_folder_without_the_not_live_data_marker(
    tmp_path, fixture_company
):
    folder, _ = fixture_company
    live = tmp_path / "live"
    live.mkdir()
    for name in os.listdir(folder):
        if name != guard.MARKER:
            (live / name).write_bytes((folder / name).read_bytes())
    before = {n: (live / n).read_bytes() for n in os.listdir(live)}
    with pytest.raises(guard.NotAFixtureFolderError, match="live Sage Pro data"):
        seed.create_company(live, today=business_today())
    with pytest.raises(Unavailable, match=guard.MARKER):
        FixtureStore(live).table("01", "invoices")
    with pytest.raises(guard.NotAFixtureFolderError):
        FixtureStore(live).recover()
    with pytest.raises(guard.NotAFixtureFolderError):
        seed.seed_invoice(live, "01", "ACME", "1.00")
    assert {n: (live / n).read_bytes() for n in os.listdir(live)} == before
    assert (
        (folder / guard.MARKER)
        .read_text()
        .startswith("This folder holds FoxPro FIXTURE")
    )


# --- the watchdog check and the repair ------------------------------------------------


def _poke(path, offset, data):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def _count(path, delta):
    h = codec.read_header_path(path)
    _poke(path, 4, (h.reccount + delta).to_bytes(4, "little"))


def test_check_finds_every_corruption_the_groundwork_listed(
    fixture_company, kill_at, tmp_path
):
    folder, store = fixture_company
    path = str(folder / "ARMAST01.DBF")
    pristine = {n: (folder / n).read_bytes() for n in ("ARMAST01.DBF", "ARMAST01.CDX")}

    def reset():
        for n, data in pristine.items():
            (folder / n).write_bytes(data)

    def findings():
        return store.check("01", "invoices", sample=None)

    invoices = store.table("01", "invoices")
    h = invoices.header()
    custno = h.field("CUSTNO")
    cases = {
        "append killed before its count": (
            lambda: (
                kill_at("append:record-written"),
                _try(invoices.append, {"INVNO": "     20003"}),
            ),
            "SIZE 1",
        ),
        "append killed before its index": (
            lambda: (
                kill_at("append:count-written"),
                _try(invoices.append, {"INVNO": "     20003"}),
            ),
            "stale index",
        ),
        "key rewritten without reindex": (
            lambda: _poke(path, h.record_pos(5) + custno.offset, b"SUPERG"),
            "SEEK misses records [5]",
        ),
        "0-byte index": (
            lambda: open(folder / "ARMAST01.CDX", "wb").close(),
            "CDX is 0 bytes",
        ),
        "index missing": (
            lambda: os.remove(folder / "ARMAST01.CDX"),
            "CDX structural index missing",
        ),
        "file truncated": (
            lambda: os.truncate(path, os.path.getsize(path) - 90),
            "SIZE truncated",
        ),
        "count too high": (lambda: _count(path, +2), "SIZE truncated"),
        "count too low": (lambda: _count(path, -1), "past the header count"),
        "bad delete flag": (
            lambda: _poke(path, h.record_pos(7), b"\x00"),
            "delete flag",
        ),
    }
    assert findings() == []
    for label, (damage, expected) in cases.items():
        damage()
        faults.FAULT = None
        found = findings()
        assert any(expected in f for f in found), (label, found)
        reset()
        assert findings() == [], label


def _try(fn, *args):
    try:
        fn(*args)
    except Killed:
        pass


def test_check_finds_a_memo_pointer_past_the_end_of_the_memo_file(tmp_path):
    from dbflib import create_dbf

    path = str(tmp_path / "NOTES.DBF")
    create_dbf(
        path,
        [("ID", "C (4)"), ("NOTE", "M")],
        [{"ID": "1", "NOTE": "hello"}, {"ID": "2", "NOTE": "x" * 100}],
        indexes={"ID": "ID"},
    )
    assert check_table(path, sample=None) == []
    h = codec.read_header_path(path)
    _poke(path, h.record_pos(2) + h.field("NOTE").offset, (9999).to_bytes(4, "little"))
    assert check_table(path) == [
        "MEMO record 2 NOTE points at block 9999 >= next free 11"
    ]


@pytest.mark.parametrize(
    "point,repair",
    [
        ("append:record-written", "dropped"),
        ("append:count-written", "rebuilt the index"),
        ("cdx:built-not-renamed", "removed a leftover index temp file"),
    ],
)
def test_recover_repairs_an_interrupted_append(fixture_company, kill_at, point, repair):
    folder, store = fixture_company
    receipts = store.table("01", "receipts")
    receipts.append(receipt(1))
    kill_at(point)
    with pytest.raises(Killed):
        receipts.append(receipt(2))
    faults.FAULT = None
    result = store.recover()
    assert result.ok, result.refused
    assert any(repair in a for a in result.actions["ARCASH01"]), result.actions
    assert store.check("01", "receipts", sample=None) == []
    assert not os.path.exists(folder / "ARCASH01.DBF.append")
    count = len(list(receipts.rows()))
    assert count == (1 if point == "append:record-written" else 2)
    receipts.append(receipt(3))
    assert [r.ref for r in receipts.find({"REFNO": "TX3".ljust(40)})] == [count + 1]


def test_recover_rebuilds_a_missing_or_empty_index_from_the_layout(fixture_company):
    folder, store = fixture_company
    open(folder / "ARMAST01.CDX", "wb").close()
    os.remove(folder / "ARCUST01.CDX")
    result = store.recover()
    assert result.ok and set(result.actions) == {"ARMAST01", "ARCUST01"}
    for name in ("invoices", "customers"):
        assert store.check("01", name, sample=None) == []
    assert [
        r.ref for r in store.table("01", "invoices").find({"INVNO": "     10056"})
    ] == [56]


def test_recover_refuses_what_it_cannot_repair_safely(fixture_company):
    folder, store = fixture_company
    path = str(folder / "ARMAST01.DBF")
    pristine = Path(path).read_bytes()
    _count(path, -1)  # looks exactly like a killed append, but record 59 was committed
    size = os.path.getsize(path)
    result = store.recover()
    assert not result.ok
    assert "may be a committed record" in result.refused["ARMAST01"][0]
    assert os.path.getsize(path) == size
    with pytest.raises(TableDamaged, match="not appending"):
        store.table("01", "invoices").append({"INVNO": "     20004"})
    record7 = codec.read_header_path(path).record_pos(7)
    for damage, finding in (
        (lambda: _count(path, +2), "SIZE truncated"),
        (lambda: os.truncate(path, size - 90), "SIZE truncated"),
        (lambda: _poke(path, record7, b"\x00"), "delete flag"),
    ):
        Path(path).write_bytes(pristine)
        damage()
        damaged = Path(path).read_bytes()
        result = store.recover()
        assert finding in result.refused["ARMAST01"][0]
        assert Path(path).read_bytes() == damaged


@pytest.mark.slow
def test_a_process_killed_mid_append_leaves_files_recover_can_repair(fixture_company):
    folder, store = fixture_company
    code = (
        "import sys, datetime; from decimal import Decimal\n"
        "from sagepro_agent.store.fixture import FixtureStore\n"
        "s = FixtureStore(sys.argv[1]); t = s.table('01', 'receipts')\n"
        "t.append({'RCPTNO': '    000009', 'CUSTNO': 'ACME  ', 'AMOUNT': Decimal('5'), 'REFNO': 'TX9'})\n"
    )
    env = {
        **os.environ,
        "AGENT_FAULT": "exit_after:S2,store:append:record-written@ARCASH01",
    }
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder)],
        env=env,
        cwd=os.getcwd(),
        check=False,
        timeout=60,
    )
    assert done.returncode == 137
    assert any("SIZE" in f for f in store.check("01", "receipts"))
    result = store.recover()
    assert result.ok and "ARCASH01" in result.actions
    assert store.check("01", "receipts", sample=None) == []
    assert list(store.table("01", "receipts").rows()) == []


def test_fault_points_are_reached_in_order(fixture_company):
    _, store = fixture_company
    seen = []
    faults.FAULT = lambda point, table: seen.append((point, table))
    try:
        row = store.table("01", "receipts").append(receipt(1))
        store.table("01", "receipts").update(
            row.ref, {"PAYMETH": "VISA"}, expect={"RCPTNO": row["RCPTNO"]}
        )
    finally:
        faults.FAULT = None
    assert seen == [
        ("append:record-written", "ARCASH01"),
        ("append:count-written", "ARCASH01"),
        ("cdx:built-not-renamed", "ARCASH01"),
        ("cdx:renamed", "ARCASH01"),
        ("update:record-written", "ARCASH01"),  # PAYMETH is in no tag: no rebuild
    ]


# --- the seed -------------------------------------------------------------------------


def test_the_seed_matches_the_sandbox_field_for_field(db, tmp_path):
    from integrations.sandbox.sagepro import seed as sandbox
    from integrations.sandbox.sagepro.models import (
        EMPTY_DATE,
        ArCust,
        ArMast,
        GlAcnt,
        GlStru,
        SycComp,
        SycDfis,
        SysData,
    )  # fmt: skip

    sandbox.seed()
    today = sandbox.today()
    seed.create_company(tmp_path / "co", "01", today=today)
    store = FixtureStore(tmp_path / "co")

    def rows(name):
        return list(store.table("01", name).rows(include_deleted=True))

    def date(value):
        return None if value == EMPTY_DATE else value

    company = SycComp.objects.get(compid="01")
    assert [
        (r["COMPID"], r["COMPNAME"].rstrip(), r["CURYR"], r["CURPRD"])
        for r in rows("company")
    ] == [(company.compid, company.compname, company.curyr, company.curprd)]
    assert [
        (
            r["YEARPRD"],
            r["BDATE"],
            r["EDATE"],
            r["PCLOSED"],
            r["PLOCKED"],
            r["PERMLCK"],
            r.deleted,
        )
        for r in rows("periods")
    ] == [
        (p.yearprd, p.bdate, p.edate, p.pclosed, p.plocked, p.permlck, p.deleted)
        for p in SycDfis.objects.filter(compid="01").order_by("yearprd")
    ]
    assert [
        (r["SEGID"], int(r["SEGLEN"]), r["SEGMASK"].rstrip())
        for r in rows("gl_structure")
    ] == [
        (s.segid, s.seglen, s.segmask)
        for s in GlStru.objects.filter(compid="01").order_by("segid")
    ]
    assert [
        (r["GLACNT"].rstrip(), r["GLDESC"].rstrip(), r["GLSTAT"].strip(), r.deleted)
        for r in rows("gl_accounts")
    ] == [
        (a.glacnt, a.gldesc, a.glstat, a.deleted)
        for a in GlAcnt.objects.filter(company="01").order_by("glacnt")
    ]
    text = [
        "CONTACT",
        "ADDRESS1",
        "ADDRESS2",
        "CITY",
        "STATE",
        "ZIP",
        "COUNTRY",
        "PHONE",
        "EMAIL",
        "PTERMS",
        "ARACCT",
        "CURRENCY",
        "CREDSTAT",
        "CUSTSTAT",
    ]
    fixture_customers = [
        (
            r["CUSTNO"],
            r["COMPANY"].rstrip(),
            *[r[f].rstrip() for f in text],
            r["BALANCE"],
            r["CREDLIMIT"],
            r["LASTPAY"],
            r["LPYMT"],
            r.deleted,
        )
        for r in rows("customers")
    ]
    sandbox_customers = [
        (
            c.custno,
            c.name,
            *[getattr(c, f.lower()) for f in text],
            c.balance,
            c.credlimit,
            date(c.lastpay),
            c.lpymt,
            c.deleted,
        )
        for c in ArCust.objects.filter(company="01").order_by("custno")
    ]
    assert len(fixture_customers) == 12
    assert fixture_customers == sandbox_customers
    fixture_invoices = [
        (r["INVNO"], r["CUSTNO"], r["INVDTE"], r["INVAMT"], r["PAIDAMT"], r["BALANCE"], r["ARTYPE"].strip(),
         r["ARSTAT"].strip(), r["ORNUM"].rstrip(), r["PONUM"].rstrip(), r.deleted)
        for r in rows("invoices")
    ]  # fmt: skip
    sandbox_invoices = [
        (
            i.invno,
            i.custno,
            i.invdte,
            i.invamt,
            i.paidamt,
            i.balance,
            i.artype,
            i.arstat,
            i.ornum,
            i.ponum,
            i.deleted,
        )
        for i in ArMast.objects.filter(company="01").order_by("invno")
    ]
    assert len(fixture_invoices) == 59
    assert fixture_invoices == sandbox_invoices
    counters = {
        r["COUNTER"].strip(): int(r["NEXTNO"])
        for r in rows("counters")
        if r["SYSID"] == "AR01    "
    }
    assert counters == {
        s.counter: s.nextno
        for s in SysData.objects.filter(company="01", module="AR").exclude(
            counter="CHANGESEQ"
        )
    }
    store.close()


def test_the_seed_helpers_behave_like_the_sandbox_ones(fixture_company):
    folder, store = fixture_company
    assert (
        seed.seed_customer(
            folder, "01", "newco", "New Co", credstat="H", credlimit="100"
        )
        == "NEWCO"
    )
    assert seed.seed_customer(folder, "01", "NEWCO") == "NEWCO"  # exists: unchanged
    customer = store.table("01", "customers").find({"CUSTNO": "NEWCO "})[0]
    assert (
        customer["COMPANY"].rstrip(),
        customer["CREDSTAT"],
        customer["CUSTSTAT"],
        customer["CREDLIMIT"],
    ) == ("New Co", "H", "A", Decimal("100.00"))
    assert (
        seed.seed_invoice(folder, "01", "newco", "100.00", ornum="77", ponum="PO-1")
        == "10060"
    )
    assert (
        seed.seed_invoice(
            folder, "01", "newco", Decimal("50.25"), "a-1", paidamt="0.25"
        )
        == "A-1"
    )
    with pytest.raises(seed.SeedError, match="exists"):
        seed.seed_invoice(folder, "01", "newco", "1.00", "A-1")
    with pytest.raises(seed.SeedError, match="no customer"):
        seed.seed_invoice(folder, "01", "nobody", "1.00")
    first = invoice(store, "10060")
    assert (first["ORNUM"], first["PONUM"].rstrip(), first["BALANCE"]) == (
        "        77",
        "PO-1",
        Decimal("100.00"),
    )
    customer = store.table("01", "customers").find({"CUSTNO": "NEWCO "})[0]
    assert customer["BALANCE"] == Decimal("150.00")
    assert seed.delete_row(folder, "01", "invoices", "10060") == [first.ref]
    assert seed.recompute_customer_balance(folder, "01", "NEWCO") == Decimal("50.00")
    yearprd = f"{business_today():%Y%m}"
    row = seed.set_period_flags(folder, "01", business_today(), pclosed=True)
    assert (row["YEARPRD"], row["PCLOSED"], row["PLOCKED"]) == (yearprd, True, False)
    made = seed.set_period_flags(folder, "01", "203001", plocked=True)
    assert (made["BDATE"], made["EDATE"], made["PLOCKED"]) == (
        datetime.date(2030, 1, 1),
        datetime.date(2030, 1, 31),
        True,
    )
    for name in ("customers", "invoices", "periods", "counters"):
        assert store.check("01", name, sample=None) == [], name


def test_a_second_company_keeps_the_first_ones_shared_rows(fixture_company):
    folder, store = fixture_company
    seed.create_company(folder, "02", today=business_today())
    companies = [r["COMPID"] for r in store.table("01", "company").rows()]
    assert companies == ["01", "02"]
    assert len(store.table("02", "periods").find({"COMPID": "02"})) == 16
    assert len(store.table("01", "periods").find({"COMPID": "01"})) == 16
    assert len(list(store.table("02", "invoices").rows())) == 58


def test_the_seed_command_builds_a_padded_company_and_refuses_a_live_folder(
    tmp_path, capsys
):
    folder = tmp_path / "demo"
    assert (
        seed.main(
            [str(folder), "--today", "2026-12-06", "--rows", "500", "--customers", "30"]
        )
        == 0
    )
    assert "invoices       " in capsys.readouterr().out
    store = FixtureStore(folder)
    invoices = list(store.table("01", "invoices").rows(include_deleted=True))
    assert len(invoices) == 500 and invoices[-1]["INVNO"] == "     10500"
    customers = store.table("01", "customers")
    assert len(list(customers.rows())) == 30
    for row in customers.rows():
        owed = sum(
            r["BALANCE"]
            for r in invoices
            if r["CUSTNO"] == row["CUSTNO"] and not r.deleted
        )
        assert row["BALANCE"] == owed
    assert store.check("01", "invoices", sample=None) == []
    counters = store.table("01", "counters").find(
        {"SYSID": "AR01    ", "COUNTER": "INVNO     "}
    )
    assert counters[0]["NEXTNO"] == "     10501"
    store.close()
    live = tmp_path / "live"
    live.mkdir()
    (live / "ARMAST01.DBF").write_bytes((folder / "ARMAST01.DBF").read_bytes())
    assert seed.main([str(live)]) == 2
    assert "may be live Sage Pro data" in capsys.readouterr().err
    assert os.listdir(live) == ["ARMAST01.DBF"]


def test_the_integrity_check_waits_for_an_append_in_progress(tmp_path):
    from sagepro_agent.store.fixture.locks import VfpLocks

    folder = tmp_path / "co"
    seed.create_company(folder, today=datetime.date(2026, 12, 6))
    store = FixtureStore(folder, reprocess=0.1)
    path = store.path("01", "invoices")
    writer = VfpLocks(path)  # another writer, mid-append, holds the header lock
    writer.header_lock()
    try:
        with pytest.raises(Locked):
            store.check("01", "invoices")
    finally:
        writer.header_unlock()
        writer.close()
    assert store.check("01", "invoices") == []
    store.close()
