"""The change feeds (contract section 8), served from the agent's change journal."""

import pytest

from tests.agent.test_core_support import (
    add_invoice,
    env_fixture,  # noqa: F401
    menv_fixture,  # noqa: F401
    receipt,
)


def feed(env, kind, cursor="", limit=None):
    query = {"changed_since": cursor}
    if limit:
        query["limit"] = str(limit)
    response = env.call("GET", f"/{kind}", query=query)
    assert response.status == 200, response.body
    return response.body


def read_all(env, kind, cursor=""):
    rows = []
    while True:
        page = feed(env, kind, cursor, limit=7)
        rows += page["results"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return rows, cursor


def test_a_full_listing_includes_closed_and_deleted_rows(env):
    rows, _ = read_all(env, "invoices")
    by_key = {r["invno"]: r for r in rows}
    assert len(rows) == len(by_key)  # each row once
    assert by_key["90004"]["deleted"] is True
    assert (
        by_key["90001"]["deleted"] is False and by_key["90001"]["balance"] == "100.00"
    )
    customers, _ = read_all(env, "customers")
    assert "TEST" in {c["custno"] for c in customers}
    # /customers without changed_since is the same full listing
    assert env.call("GET", "/customers").body["results"][0] == customers[0]


def test_a_posting_shows_up_after_the_cursor_at_once(env):
    _, cursor = read_all(env, "invoices")
    assert feed(env, "invoices", cursor) == {
        "results": [],
        "next_cursor": cursor,
        "has_more": False,
    }
    env.post("k1", receipt(apps=[("90001", "100.00")]))
    page = feed(env, "invoices", cursor)
    assert [(r["invno"], r["status"]) for r in page["results"]] == [("90001", "closed")]
    customers = feed(env, "customers", read_all(env, "customers")[1])
    assert customers["results"] == []  # already journalled by the posting, seen above
    _, ccursor = read_all(env, "customers")
    env.post("k2", receipt(reference="R2", apps=[("90002", "10.00")]))
    assert [c["custno"] for c in feed(env, "customers", ccursor)["results"]] == ["TEST"]


def test_the_scanner_sees_changes_made_by_sage_users(env):
    _, cursor = read_all(env, "invoices")
    add_invoice(env.store, "TEST", "90005", "12.00")
    table = env.table("invoices")
    row = table.find({"INVNO": "     90002"})[0]
    table.set_deleted(row.ref, True, expect={"INVNO": "     90002"})
    env.agent.scan()
    page = feed(env, "invoices", cursor)
    assert {(r["invno"], r["deleted"]) for r in page["results"]} == {
        ("90005", False),
        ("90002", True),
    }
    # Nothing changed: a second scan journals nothing.
    env.agent.scan()
    assert feed(env, "invoices", page["next_cursor"])["results"] == []


def test_a_row_that_vanished_after_a_pack_is_journalled_as_deleted(menv):
    _, cursor = read_all(menv, "invoices")
    table = menv.table("invoices")
    row = table.find({"INVNO": "     90002"})[0]
    table.set_deleted(row.ref, True, expect={"INVNO": "     90002"})
    table.pack()
    menv.agent.scan()
    page = feed(menv, "invoices", cursor)
    assert [(r["invno"], r["deleted"], r["balance"]) for r in page["results"]] == [
        ("90002", True, "200.00")
    ]


def test_cursors_survive_a_restart(env):
    from tests.agent.test_core_support import new_agent

    _, cursor = read_all(env, "invoices")
    env.agent.journal.close()
    env.agent = new_agent(env.tmp, env.store)
    env.post("k1", receipt(apps=[("90001", "1.00")]))
    assert [r["invno"] for r in feed(env, "invoices", cursor)["results"]] == ["90001"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"changed_since": "abc"}, "changed_since"),
        ({"changed_since": "1.2"}, "changed_since"),
        ({"changed_since": "0", "limit": "0"}, "limit"),
        ({"changed_since": "0", "limit": "1001"}, "limit"),
    ],
)
def test_bad_cursor_or_limit_is_400(env, query, field):
    response = env.call("GET", "/invoices", query=query)
    assert response.status == 400 and field in response.body["errors"]
