"""The read resources of the contract (sections 1-4), on the memory and fixture stores."""

import pytest

from sagepro_agent.store.base import Unavailable
from tests.agent.test_core_support import (
    TODAY,
    env_fixture,  # noqa: F401
    menv_fixture,  # noqa: F401
    period_date,
)


def test_customer_is_found_by_padded_or_lower_case_key(env):
    for key in ("test", "TEST", " test  ", "TEST  "):
        response = env.call("GET", f"/customers/{key}")
        assert response.status == 200, key
        assert response.body["custno"] == "TEST"
    body = env.customer("test")
    assert body["company"] == "Test Customer"
    assert body["company_id"] == "01"
    assert body["balance"] == "260.00"  # 100 + 200 - 40; the deleted 80 does not count
    assert body["last_payment_date"] is None
    assert body["last_payment_amount"] == "0.00"


def test_unknown_or_too_long_customer_is_404(env):
    assert env.call("GET", "/customers/NOBODY").body == {
        "code": "CUSTOMER_NOT_FOUND",
        "detail": "no customer 'NOBODY'",
    }
    too_long = env.call("GET", "/customers/SEVENCH")
    assert too_long.status == 404
    assert too_long.body["code"] == "CUSTOMER_NOT_FOUND"


def test_invoice_keys_are_right_justified_and_anything_unknown_is_404(env):
    assert env.invoice("90001")["invno"] == "90001"
    assert env.call("GET", "/invoices/   90001").status == 200
    for key in ("a/b", "NOPE", "12345678901", "90004"):  # 90004 is deleted
        response = env.call("GET", f"/invoices/{key}")
        assert response.status == 404, key
        assert response.body["code"] == "INVOICE_NOT_FOUND"


def test_invoice_money_has_two_places_and_credit_memos_are_negative(env):
    paid = env.invoice("90002")
    assert (paid["invamt"], paid["paidamt"], paid["balance"]) == (
        "250.00",
        "50.00",
        "200.00",
    )
    memo = env.invoice("90003")
    assert (memo["artype"], memo["balance"], memo["status"]) == ("C", "-40.00", "open")
    assert paid["invdte"] == TODAY.isoformat()


def test_invoice_search_by_customer_and_status(env):
    def numbers(**query):
        response = env.call("GET", "/invoices", query=query)
        assert response.status == 200, response.body
        return [i["invno"] for i in response.body["results"]]

    assert numbers(custno="test", status="open") == ["90001", "90002", "90003"]
    assert numbers(custno="test", status="closed") == []
    assert numbers(custno="test") == ["90001", "90002", "90003"]
    bad = env.call("GET", "/invoices", query={"status": "paid"})
    assert bad.status == 400
    assert bad.body["errors"] == {"status": ["must be open, closed or all"]}
    assert env.call("GET", "/invoices", query={"custno": "NOBODY"}).status == 404


def test_open_items_are_the_open_invoices(env):
    response = env.call("GET", "/customers/test/open-items")
    assert [i["invno"] for i in response.body["results"]] == ["90001", "90002", "90003"]


def test_gl_accounts_hide_deleted_and_mark_inactive(env):
    results = env.call("GET", "/gl-accounts").body["results"]
    codes = {a["glacnt"]: a for a in results}
    assert "1050-00" not in codes
    assert codes["6900-00"]["active"] is False and codes["6900-00"]["glstat"] == "I"
    assert codes["1100-00"] == {
        "glacnt": "1100-00",
        "gldesc": "Undeposited card receipts",
        "glstat": "",
        "active": True,
    }
    assert [a["glacnt"] for a in results] == sorted(codes)
    assert env.call("GET", "/gl-accounts/110000").body["glacnt"] == "1100-00"
    assert env.call("GET", "/gl-accounts/1100-00").status == 200
    missing = env.call("GET", "/gl-accounts/1050-00")
    assert missing.body == {
        "code": "ACCOUNT_NOT_FOUND",
        "detail": "no GL account '1050-00'",
    }


def test_periods_are_ordered_and_mark_the_current_one(env):
    results = env.call("GET", "/periods").body["results"]
    assert [p["yearprd"] for p in results] == sorted(p["yearprd"] for p in results)
    current = [p for p in results if p["current"]]
    assert len(current) == 1 and current[0]["yearprd"] == TODAY.strftime("%Y%m")
    assert current[0]["bdate"] == TODAY.replace(day=1).isoformat()
    two_ago = period_date(-2, TODAY).strftime("%Y%m")
    assert [p for p in results if p["yearprd"] == two_ago][0]["plocked"] is True


def test_company_header_is_normalised_and_unknown_companies_are_404(env):
    assert env.call("GET", "/periods", headers={"Sage-Company": " 01 "}).status == 200
    unknown = env.call("GET", "/periods", headers={"Sage-Company": "02"})
    assert unknown.body == {"code": "COMPANY_NOT_FOUND", "detail": "no company '02'"}
    bad = env.call("GET", "/periods", headers={"Sage-Company": "123"})
    assert bad.status == 404 and bad.body["code"] == "COMPANY_NOT_FOUND"


def test_wrong_method_is_405_with_allow_and_unknown_path_404(env):
    response = env.call("DELETE", "/cash-receipts/000001")
    assert response.status == 405
    assert response.body == {
        "code": "METHOD_NOT_ALLOWED",
        "detail": "DELETE is not allowed",
    }
    assert response.headers["Allow"] == "GET"
    assert env.call("GET", "/cash-receipts/batch").headers["Allow"] == "POST"
    assert env.call("POST", "/invoices", {}).status == 405
    assert env.call("GET", "/nothing-here").status == 404


def test_store_offline_is_503_with_retry_after(menv):
    menv.store.offline = True
    response = menv.call("GET", "/customers/test")
    assert response.status == 503
    assert response.body["code"] == "UNAVAILABLE"
    assert response.headers["Retry-After"]


def test_an_unexpected_error_is_logged_and_answered_503(menv, monkeypatch, caplog):
    from sagepro_agent.core import reads

    def boom(*args, **kwargs):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(reads, "customer_json", boom)
    response = menv.call("GET", "/customers/test")
    assert response.status == 503 and response.body["code"] == "UNAVAILABLE"
    assert "ZeroDivisionError" in caplog.text


@pytest.mark.parametrize("error", [Unavailable("share offline")])
def test_a_store_failure_on_a_read_is_503(menv, error):
    menv.store.fail_next("find", "invoices", error)
    assert menv.call("GET", "/invoices/90001").status == 503
    assert menv.call("GET", "/invoices/90001").status == 200
