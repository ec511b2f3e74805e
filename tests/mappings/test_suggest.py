"""Mapping suggestions, as a pure function: names, shapes and feedback."""

import copy

import pytest

from mappings.suggest import (
    Feedback,
    UnknownTargetError,
    flatten,
    source_key,
    suggest_mappings,
    tokenize,
    value_shape,
)

# A record of PayTrace's v1 transaction export (`transactions/export/by_id`).
V1_RECORD = {
    "transaction_id": 500000123,
    "transaction_type": "SALE",
    "amount": 250.5,
    "tax_amount": "12.00",
    "invoice_id": "SO-10045",
    "customer_reference_id": "PO-7781",
    "description": "",
    "customer_id": "ACME",
    "receipt_emailed_to": "",
    "credit_card": {
        "masked_number": "************1111",
        "expiration_month": 9,
        "expiration_year": 27,
    },
    "billing_address": {
        "name": "Inland Supply Co",
        "street_address": "100 W Main Ave",
        "street_address2": "",
        "city": "Spokane",
        "state": "WA",
        "zip": "99201",
        "country": "US",
    },
    "approval_code": "ABC123",
    "status_code": "GB812",
    "status_message": "GB812",
    "created": {
        "through": "API",
        "at": "3/4/2025 2:07:09 PM",
        "by": "apiuser",
        "from_ip": "203.0.113.9",
    },
    "settled": "3/4/2025 8:15:00 PM",
}

V1_EXPECTED = {
    "custno": "customer_id",
    "date": "created.at",
    "amount": "amount",
    "method": "credit_card.masked_number",
    "reference": "transaction_id",
    "invno": "invoice_id",
    "gl_account": None,
}


def top1(target, sample, feedback=()):
    return {
        s.target_field: s.source_path
        for s in suggest_mappings(target, sample, feedback)
    }


def by_field(target, sample, feedback=()):
    return {s.target_field: s for s in suggest_mappings(target, sample, feedback)}


def test_it_gets_every_cash_receipt_field_of_the_v1_record_right():
    assert top1("cash_receipt", V1_RECORD) == V1_EXPECTED


def test_it_gets_them_right_when_the_customer_id_is_empty():
    record = {**V1_RECORD, "customer_id": ""}

    assert top1("cash_receipt", record) == V1_EXPECTED


def test_each_suggestion_has_a_confidence_and_reasons():
    suggestions = by_field("cash_receipt", V1_RECORD)

    invno = suggestions["invno"]
    assert 0.8 <= invno.confidence <= 1
    assert any("invoice" in r and "invoice_id" in r for r in invno.reasons)
    amount = suggestions["amount"]
    assert "value looks like an amount: 250.5" in amount.reasons
    assert suggestions["gl_account"].confidence == 0
    for s in suggestions.values():
        assert 0 <= s.confidence <= 1


def test_it_is_deterministic():
    assert suggest_mappings("cash_receipt", V1_RECORD) == suggest_mappings(
        "cash_receipt", copy.deepcopy(V1_RECORD)
    )


def test_it_never_uses_one_source_path_twice():
    paths = [p for p in top1("cash_receipt", V1_RECORD).values() if p]

    assert len(paths) == len(set(paths))


@pytest.mark.parametrize(
    ("sample", "field", "path"),
    [
        ({"invoiceNumber": "10045", "note": "x"}, "invno", "invoiceNumber"),
        ({"invoice_number": "10045", "note": "x"}, "invno", "invoice_number"),
        ({"INVNO": "10045", "NOTE": "x"}, "invno", "INVNO"),
        ({"InvNo": "10045"}, "invno", "InvNo"),
        ({"CUSTNO": "ACME", "INVNO": "10045"}, "custno", "CUSTNO"),
        ({"customerLabel": "ACME", "memo": "hi"}, "custno", "customerLabel"),
        ({"PAYAMT": "250.50", "PAYDTE": "03/04/2025"}, "amount", "PAYAMT"),
        ({"PAYAMT": "250.50", "PAYDTE": "03/04/2025"}, "date", "PAYDTE"),
        ({"txnId": 600000321, "memo": "hi"}, "reference", "txnId"),
        ({"data": {"createdAt": "2025-03-04T14:07:09Z"}}, "date", "data.createdAt"),
    ],
)
def test_names_match_across_naming_styles(sample, field, path):
    assert top1("cash_receipt", sample)[field] == path


def test_it_tokenises_names_across_styles():
    assert tokenize("invoiceId") == ["invoice", "id"]
    assert tokenize("invoice_id") == ["invoice", "id"]
    assert tokenize("INVNO") == ["invoice", "number"]
    assert tokenize("ordernumber") == ["order", "number"]
    assert tokenize("data.customerLabel") == ["customer", "label"]


def test_source_keys_are_the_normalised_last_segment():
    assert source_key("data.invoiceId") == "invoice_id"
    assert source_key("invoice_id") == "invoice_id"
    assert source_key("transactions.0.customer_id") == "customer_id"


def test_it_flattens_objects_to_dot_paths_and_lists_to_their_first_element():
    flat = flatten({"created": {"at": "x"}, "items": [{"sku": "A"}, {"sku": "B"}]})

    assert flat == {"created.at": "x", "items.0.sku": "A"}


@pytest.mark.parametrize(
    ("value", "shape"),
    [
        ("3/4/2025 2:07:09 PM", "datetime"),
        ("2025-03-04", "date"),
        ("12.00", "amount"),
        (250.5, "amount"),
        ("ap@acme.example", "email"),
        ("************1111", "masked_card"),
        ("SO-10045", "identifier"),
        ("VISA", "tender"),
        ("", "empty"),
    ],
)
def test_it_reads_value_shapes(value, shape):
    assert value_shape(value) == shape


def test_the_value_shape_decides_between_similar_names():
    # Two equally good names; only one value is a date.
    sample = {"created": "apiuser", "created_on": "3/4/2025"}
    assert top1("cash_receipt", sample)["date"] == "created_on"

    sample = {"created": "3/4/2025", "created_on": "apiuser"}
    assert top1("cash_receipt", sample)["date"] == "created"


def test_a_shape_alone_is_no_reason_to_map():
    assert top1("cash_receipt", {"foo": "3/4/2025"})["date"] is None


def test_an_unknown_target_is_an_error():
    with pytest.raises(UnknownTargetError, match="cash_receipt"):
        suggest_mappings("journal", V1_RECORD)


# -- Feedback ---------------------------------------------------------------------------


def test_rejecting_the_top_suggestion_makes_the_runner_up_top_1():
    before = by_field("cash_receipt", V1_RECORD)["custno"]
    runner_up = before.alternatives[0].source_path
    assert (before.source_path, runner_up) == ("customer_id", "customer_reference_id")

    rejected = [Feedback("custno", "customer_id", accepted=False)]
    after = by_field("cash_receipt", V1_RECORD, rejected)["custno"]

    assert after.source_path == runner_up
    assert "customer_id" not in [a.source_path for a in after.alternatives]


def test_accepting_the_runner_up_makes_it_top_1():
    accepted = [Feedback("custno", "customer_reference_id", accepted=True)]

    after = by_field("cash_receipt", V1_RECORD, accepted)["custno"]

    assert after.source_path == "customer_reference_id"
    assert "admins accepted 1× 'customer_reference_id' for custno before" in (
        after.reasons
    )


def test_feedback_applies_to_a_similar_source_with_the_same_key_elsewhere():
    v3_like = {
        "data": {
            "transaction_id": 600000321,
            "amount": "89.00",
            "invoice_number": "10045",
            "customer_id": "BLUEOX",
            "customer_reference_id": "PO-12",
        }
    }
    assert top1("cash_receipt", v3_like)["custno"] == "data.customer_id"

    accepted = [Feedback("custno", "customer_reference_id", accepted=True)]
    assert top1("cash_receipt", v3_like, accepted)["custno"] == (
        "data.customer_reference_id"
    )

    rejected = [Feedback("custno", "customer_id", accepted=False)]
    assert top1("cash_receipt", v3_like, rejected)["custno"] != "data.customer_id"


def test_feedback_for_another_field_changes_nothing():
    feedback = [Feedback("invno", "customer_id", accepted=False)]

    assert top1("cash_receipt", V1_RECORD, feedback) == V1_EXPECTED


def test_a_storefront_order_has_sales_order_targets():
    order = {
        "order_number": 1042,
        "created_at": "2025-05-02T10:14:33-07:00",
        "total_price": "199.00",
        "total_tax": "11.00",
        "customer": {"id": 7390012, "email": "jo@harbor.example"},
    }

    got = top1("sales_order", order)

    assert got["sono"] == "order_number"
    assert got["ordate"] == "created_at"
    assert got["ordamt"] == "total_price"
    assert got["tax"] == "total_tax"
    assert got["custno"] == "customer.id"
