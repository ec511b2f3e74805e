"""Status maps as pure functions: which rule decides what a PayTrace state means."""

from mappings.status import DEFAULT_RULES, Action, StatusFacts, StatusRule, map_status


def _decide(**facts):
    rule = map_status(StatusFacts(**facts), DEFAULT_RULES)
    return (
        None
        if rule is None
        else (rule.gateway_status, rule.payment_status, rule.action)
    )


def test_an_approved_event_is_paid_and_posts_a_receipt():
    assert _decide(event_type="transaction.approved", transaction_type="SALE") == (
        "approved",
        "Paid",
        Action.POST_RECEIPT,
    )


def test_a_refund_transaction_never_posts_a_receipt_whatever_the_event_says():
    # It reverses: a credit memo against its sale's receipt (integrations.refunds).
    assert _decide(event_type="transaction.approved", transaction_type="refund") == (
        "refunded",
        "Refunded",
        Action.REVERSE,
    )


def test_a_declined_event_is_recorded_as_failed():
    assert _decide(event_type="transaction.declined") == (
        "declined",
        "Failed",
        Action.RECORD_ONLY,
    )


def test_polled_records_are_read_by_their_status_code_and_message():
    assert (
        _decide(event_type="transaction.exported", status_code="GB123")[0] == "settled"
    )
    assert _decide(event_type="transaction.exported", status_code="Y")[0] == (
        "pending_settlement"
    )
    assert (
        _decide(
            event_type="transaction.exported",
            status_code="N",
            status_message="Transaction Voided",
        )[0]
        == "voided"
    )
    assert (
        _decide(
            event_type="transaction.exported",
            status_code="N",
            status_message="  declined by issuer ",
        )[0]
        == "declined"
    )


def test_a_state_no_rule_knows_is_unmapped():
    assert _decide(event_type="transaction.exported", status_code="Q") is None


def test_patterns_are_case_insensitive_globs_and_blank_conditions_match_anything():
    rule = StatusRule(
        "settled", "Paid", Action.POST_RECEIPT, status_message_pattern="*settled*"
    )
    assert rule.matches(StatusFacts(status_message="Batch SETTLED ok"))
    assert not rule.matches(StatusFacts(status_message="pending"))
    assert StatusRule("x", "Paid", Action.REVIEW).matches(StatusFacts())


def test_response_code_must_equal_when_the_rule_names_one():
    rule = StatusRule("declined", "Failed", Action.RECORD_ONLY, response_code=102)
    assert rule.matches(StatusFacts(response_code=102))
    assert not rule.matches(StatusFacts(response_code=101))
    assert not rule.matches(StatusFacts(response_code=None))


def test_the_lowest_priority_number_wins_then_the_lowest_id():
    facts = StatusFacts(event_type="transaction.approved")
    late = StatusRule("approved", "Paid", Action.POST_RECEIPT, priority=50, id=1)
    early = StatusRule("approved", "Pending", Action.REVIEW, priority=10, id=9)
    assert map_status(facts, [late, early]) is early
    first = StatusRule("approved", "Paid", Action.POST_RECEIPT, priority=10, id=2)
    assert map_status(facts, [early, first]) is first


def test_describe_names_the_conditions_and_the_outcome():
    rule = StatusRule(
        "settled",
        "Paid",
        Action.POST_RECEIPT,
        event_type="transaction.exported",
        status_code_pattern="GB*",
        id=7,
    )
    assert rule.describe() == (
        "#7 event transaction.exported, status_code GB* → Paid/post_receipt"
    )
    assert StatusRule("x", "Failed", Action.REVIEW).describe() == (
        "#- anything → Failed/review"
    )
