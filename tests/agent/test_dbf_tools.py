"""The read-only FoxPro tools: schema dump, snapshot and diff, the integrity check's
command line. They never write to the folder they read."""

import datetime
import hashlib
import json
import os
from decimal import Decimal

import pytest

from sagepro_agent.dbf import cdx, diff, integrity, schema, snapshot


def _digest(folder):
    return {
        n: hashlib.sha256((folder / n).read_bytes()).hexdigest()
        for n in sorted(os.listdir(folder))
    }


def test_schema_dump_lists_fields_tags_and_what_the_store_can_evaluate(
    fixture_company, capsys
):
    folder, _ = fixture_company
    before = _digest(folder)
    dumped = schema.dump(folder)
    tables = {t["table"]: t for t in dumped["tables"]}
    assert set(tables) == {
        "ARCAPP01", "ARCASH01", "ARCUST01", "ARMAST01", "GLACNT01", "GLSTRU", "SYCCOMP", "SYCDFIS", "SYSDATA",
    }  # fmt: skip
    armast = tables["ARMAST01"]
    assert armast["records"] == 59 and armast["size_ok"]
    assert armast["flags"] == ["structural CDX"]
    assert {"name": "INVAMT", "type": "N", "width": 14, "decimals": 2} in armast[
        "fields"
    ]
    tags = {t["tag"]: t for t in armast["tags"]}
    assert tags["CUSTNO"]["key"] == "CUSTNO+INVNO"
    assert tags["CUSTNO"]["evaluable"] and tags["CUSTNO"]["seek_fields"] == [
        "CUSTNO",
        "INVNO",
    ]
    company = {t["tag"]: t for t in tables["ARCUST01"]["tags"]}["COMPANY"]
    assert (
        company["evaluable"] and company["seek_fields"] == []
    )  # UPPER(): no byte-exact SEEK
    assert schema.main([str(folder)]) == 0
    text = capsys.readouterr().out
    assert "tag CUSTDATE   CUSTNO+DTOS(DTEPAID)  [evaluable, SEEK on CUSTNO]" in text
    assert schema.main([str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tables"][0]["table"] == "ARCAPP01"
    assert _digest(folder) == before


def test_schema_says_when_a_tag_expression_is_outside_what_can_be_evaluated(tmp_path):
    from dbflib import create_dbf

    path = tmp_path / "ODD.DBF"
    create_dbf(
        str(path), [("NAME", "C (10)")], [{"NAME": "x"}], indexes={"NAME": "NAME"}
    )
    # Rewrite the stored key expression to a function dbflib's compiler does not know.
    data = bytearray((tmp_path / "ODD.CDX").read_bytes())
    at = data.index(b"NAME\x00", 1024 + 512)
    data[at : at + 15] = b"SOUNDEX(NAME)\x00\x00"
    (tmp_path / "ODD.CDX").write_bytes(bytes(data))
    (tag,) = schema.describe_table(str(path))["tags"]
    assert tag["key"] == "SOUNDEX(NAME)"
    assert not tag["evaluable"] and tag["problems"]
    assert "NOT evaluable" in schema.render(schema.dump(tmp_path))


def test_snapshot_and_diff_name_exactly_what_a_posting_changed(
    fixture_company, tmp_path, capsys
):
    folder, store = fixture_company
    live_before = _digest(folder)
    manifest = snapshot.take(folder, tmp_path / "before")
    assert _digest(folder) == live_before
    assert manifest["files"]["ARMAST01.DBF"]["sha256"] == live_before["ARMAST01.DBF"]
    assert "FIXTURE-NOT-LIVE-DATA.txt" not in manifest["files"]

    invoices = store.table("01", "invoices")
    row = invoices.find({"INVNO": "     10003"})[0]
    invoices.update(
        row.ref,
        {
            "PAIDAMT": row["PAIDAMT"] + Decimal("25.00"),
            "BALANCE": row["BALANCE"] - Decimal("25.00"),
        },
        expect={"INVNO": row["INVNO"], "PAIDAMT": row["PAIDAMT"]},
    )
    store.table("01", "receipts").append(
        {
            "RCPTNO": "    000001",
            "CUSTNO": "CASCAD",
            "DTEPAID": datetime.date(2026, 12, 1),
            "AMOUNT": Decimal("25"),
            "REFNO": "TX-1",
        }
    )
    deleted = invoices.find({"INVNO": "     10010"})[0]
    invoices.set_deleted(deleted.ref, True, expect={"INVNO": "     10010"})
    snapshot.take(folder, tmp_path / "after")

    result = diff.compare(tmp_path / "before", tmp_path / "after")
    assert [t.table for t in result.tables] == ["ARCASH01", "ARMAST01"]
    armast = result.table("ARMAST01")
    assert armast.key_tag == "INVNO"
    assert [(r.kind, r.recno, r.key) for r in armast.records] == [
        ("changed", row.ref, "INVNO=10003"),
        ("deleted", deleted.ref, "INVNO=10010"),
    ]
    assert [(c.field, c.before, c.after) for c in armast.records[0].fields] == [
        ("PAIDAMT", row["PAIDAMT"], row["PAIDAMT"] + 25),
        ("BALANCE", row["BALANCE"], row["BALANCE"] - 25),
    ]
    assert armast.records[1].fields == []
    assert "index (CDX) rewritten" not in armast.notes  # no key field changed
    arcash = result.table("ARCASH01")
    (added,) = arcash.records
    assert (added.kind, added.recno, added.key) == ("added", 1, "RCPTNO=000001")
    assert ("REFNO", "TX-1".ljust(40)) in [(c.field, c.after) for c in added.fields]
    assert "index (CDX) rewritten" in arcash.notes
    assert "ARCUST01" in result.unchanged

    assert diff.main([str(tmp_path / "before"), str(tmp_path / "after")]) == 1
    text = capsys.readouterr().out
    assert "changed record 3 [INVNO=10003]" in text
    assert f"PAIDAMT: {row['PAIDAMT']} -> {row['PAIDAMT'] + 25}" in text
    assert "REFNO = 'TX-1" in text
    assert diff.main([str(tmp_path / "before"), str(tmp_path / "before")]) == 0


def test_diff_shows_memo_changes_and_matches_by_key_after_a_pack(tmp_path):
    from dbflib import create_dbf

    before, after = tmp_path / "b", tmp_path / "a"
    before.mkdir(), after.mkdir()
    columns = [("ID", "C (4)"), ("NOTE", "M")]
    create_dbf(
        str(before / "T.DBF"),
        columns,
        [
            {"ID": "1", "NOTE": "one"},
            {"ID": "2", "NOTE": "two"},
            {"ID": "3", "NOTE": "three"},
        ],
        indexes={"ID": "ID"},
    )
    create_dbf(
        str(after / "T.DBF"),
        columns,
        [{"ID": "1", "NOTE": "one"}, {"ID": "3", "NOTE": "three, edited"}],
        indexes={"ID": "ID"},
    )
    table = diff.compare(before, after).table("T")
    assert [(r.kind, r.key, r.recno, r.before_recno) for r in table.records] == [
        ("changed", "ID=3", 2, 3),
        ("removed", "ID=2", 2, 2),
    ]
    assert [(c.field, c.before, c.after) for c in table.records[0].fields] == [
        ("NOTE", "three", "three, edited")
    ]


def test_snapshot_refuses_a_non_empty_destination(fixture_company, tmp_path, capsys):
    folder, _ = fixture_company
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert snapshot.main([str(folder), str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert snapshot.main([str(folder), str(tmp_path / "new")]) == 0


def test_the_check_command_reports_each_damaged_table(fixture_company, capsys):
    folder, _ = fixture_company
    assert integrity.main([str(folder), "--full"]) == 0
    assert "9 table(s) checked, 0 with problems" in capsys.readouterr().out
    open(folder / "ARCUST01.CDX", "wb").close()
    assert integrity.main([str(folder)]) == 1
    out = capsys.readouterr().out
    assert "ARCUST01.DBF: 1 problem(s)\n  CDX is 0 bytes: empty or truncated" in out
    assert integrity.main([str(folder / "nowhere")]) == 2


def test_the_integrity_check_uses_dbflibs_key_compiler_with_vfp_semantics(
    fixture_company,
):
    # dbflib.cdx._compile_tag is private API (dbflib pinned to 1.1): if it changes, this fails.
    from dbflib.cdx import _compile_tag
    from dbflib.reader import DbfTableData

    folder, _ = fixture_company
    table = DbfTableData(str(folder / "ARCUST01.DBF"))
    slots = {}
    tag, _unique = _compile_tag(
        "COMPANY", {"key": "UPPER(COMPANY)"}, table.fields, slots
    )
    values = [table.field_converter(n)(table.data, table.header_length) for n in slots]
    assert tag.encode(tag.key_func(values)) == b"ACME SUPPLY CO".ljust(35)
    with cdx.CdxFile(str(folder / "ARCUST01.CDX")) as index:
        assert index.seek("COMPANY", b"ACME SUPPLY CO".ljust(35)) == [1]
        assert index.tag_info("company").key == "UPPER(COMPANY)"


def test_the_cdx_reader_refuses_an_empty_file(tmp_path):
    path = tmp_path / "E.CDX"
    path.write_bytes(b"")
    with pytest.raises(cdx.CdxError, match="no index"):
        cdx.CdxFile(str(path))
