"""Every non-receipt document is sent like a receipt: once in effect, looked up by its
key after an unknown outcome, retried on transient failures, and handed to a person
(with Sage Pro's words) when refused or not supported at the site."""

from decimal import Decimal

import pytest
from django.test import override_settings

from integrations import processing, sending
from integrations.connectors.base import ConnectorError
from integrations.models import Connection, Posting, ReviewItem
from tests.factories import make_connection, make_transaction

pytestmark = pytest.mark.django_db


class FakeSage:
    """Stands in for the connector: remembers what was sent under which key."""

    def __init__(self):
        self.sent: dict[str, dict] = {}
        self.fail_with: list[BaseException] = []
        self.lose_answer = False

    def send(self, posting):
        if self.fail_with:
            raise self.fail_with.pop(0)
        answer = {"batch_no": f"{len(self.sent) + 1:06d}", **posting.payload}
        self.sent.setdefault(posting.idempotency_key, answer)
        if self.lose_answer:
            self.lose_answer = False
            raise ConnectorError("timed out", transient=True, outcome_unknown=True)
        return self.sent[posting.idempotency_key]

    def find(self, posting):
        return self.sent.get(posting.idempotency_key)


@pytest.fixture
def fake(monkeypatch):
    sage = FakeSage()
    posted_hook: list[tuple[int, str]] = []
    monkeypatch.setattr(Connection, "sage", lambda self: sage)
    sender = sending.DocumentSender(
        kind=Posting.Kind.GL_BATCH,
        label="GL batch",
        send=lambda client, posting: client.send(posting),
        find=lambda client, posting: client.find(posting),
        number=lambda answer: str(answer.get("batch_no", "")),
        on_posted=lambda posting, answer: posted_hook.append(
            (posting.pk, answer["batch_no"])
        ),
        review_kind=ReviewItem.Kind.CHARGEBACK,
    )
    monkeypatch.setitem(sending._SENDERS, Posting.Kind.GL_BATCH, sender)
    sage.posted_hook = posted_hook
    return sage


def new_posting(suffix="opened"):
    txn = make_transaction(amount=Decimal("150.00"))
    sage_conn = make_connection(kind=Connection.Kind.SAGEPRO)
    payload = {
        "date": "2026-12-01",
        "lines": [{"account": "6100-00", "debit": "150.00"}],
    }
    posting, created = sending.create_posting(
        txn, sage_conn, Posting.Kind.GL_BATCH, payload, key_suffix=suffix
    )
    assert created
    return posting


def test_a_document_is_sent_once_and_its_number_recorded(fake):
    posting = new_posting()

    assert processing.send_posting(posting.pk) == "posted"
    assert processing.send_posting(posting.pk) == "skipped"

    posting.refresh_from_db()
    assert posting.state == Posting.State.POSTED
    assert posting.document_number == "000001"
    assert len(fake.sent) == 1
    assert fake.posted_hook == [(posting.pk, "000001")]
    assert posting.transaction.history.filter(
        action="posted", detail__contains="GL batch 000001"
    ).exists()


def test_the_same_key_is_never_a_second_document(fake):
    posting = new_posting("lost")
    again, created = sending.create_posting(
        posting.transaction,
        posting.sagepro,
        Posting.Kind.GL_BATCH,
        {"something": "else"},
        key_suffix="lost",
    )
    assert not created
    assert again.pk == posting.pk
    assert again.payload == posting.payload
    other, created = sending.create_posting(
        posting.transaction,
        posting.sagepro,
        Posting.Kind.GL_BATCH,
        {"date": "2026-12-02"},
        key_suffix="won",
    )
    assert created and other.pk != posting.pk


def test_after_an_unknown_outcome_it_is_found_by_key_not_sent_again(fake):
    posting = new_posting()
    fake.lose_answer = True

    assert processing.send_posting(posting.pk) == "failed (will retry)"
    Posting.objects.filter(pk=posting.pk).update(next_attempt_at=None)
    assert processing.send_posting(posting.pk) == "posted"

    posting.refresh_from_db()
    assert posting.state == Posting.State.POSTED
    assert len(fake.sent) == 1
    assert posting.transaction.history.filter(
        detail__contains="found by idempotency key"
    ).exists()


@override_settings(POSTING_MAX_ATTEMPTS=3)
def test_transient_failures_back_off_then_go_dead(fake):
    posting = new_posting()
    fake.fail_with = [
        ConnectorError("down", transient=True, code="UNAVAILABLE", status=503)
        for _ in range(3)
    ]
    outcomes = []
    for _ in range(3):
        outcomes.append(processing.send_posting(posting.pk))
        Posting.objects.filter(pk=posting.pk).update(next_attempt_at=None)

    assert outcomes == ["failed (will retry)", "failed (will retry)", "dead"]
    posting.refresh_from_db()
    assert posting.state == Posting.State.DEAD
    assert ReviewItem.objects.filter(posting=posting, kind="dead").exists()


def test_not_supported_at_the_site_asks_a_person_to_post_it_by_hand(fake):
    posting = new_posting()
    fake.fail_with = [
        ConnectorError(
            "Sage Pro gateway refused POST /gl-batches: GL batches are not supported",
            transient=False,
            code="NOT_SUPPORTED_AT_SITE",
            status=501,
        )
    ]

    assert processing.send_posting(posting.pk) == "needs review"

    posting.refresh_from_db()
    assert posting.state == Posting.State.NEEDS_REVIEW
    item = ReviewItem.objects.get(posting=posting)
    assert item.kind == ReviewItem.Kind.UNSUPPORTED_DOCUMENT
    assert "does not accept this GL batch through the on-site agent" in item.reason
    assert "Post the GL batch in Sage Pro by hand" in item.reason
    assert item.error_code == "NOT_SUPPORTED_AT_SITE"


def test_a_business_refusal_opens_the_kinds_review_item_with_sage_pros_words(fake):
    posting = new_posting()
    fake.fail_with = [
        ConnectorError(
            "Sage Pro gateway refused POST /gl-batches: period 202509 is closed",
            transient=False,
            code="PERIOD_CLOSED",
            status=422,
        )
    ]

    assert processing.send_posting(posting.pk) == "needs review"

    item = ReviewItem.objects.get(posting=posting)
    assert item.kind == ReviewItem.Kind.CHARGEBACK
    assert "period 202509 is closed" in item.reason
    assert item.error_code == "PERIOD_CLOSED"


def test_a_kind_may_take_over_its_refusals(fake, monkeypatch):
    posting = new_posting()
    seen = []
    sender = sending._SENDERS[Posting.Kind.GL_BATCH]
    monkeypatch.setitem(
        sending._SENDERS,
        Posting.Kind.GL_BATCH,
        sending.DocumentSender(
            **{
                **sender.__dict__,
                "on_refused": lambda p, exc: seen.append(exc.code) or "handled",
            }
        ),
    )
    fake.fail_with = [ConnectorError("no", transient=False, code="OVER_REFUND")]

    assert processing.send_posting(posting.pk) == "handled"
    assert seen == ["OVER_REFUND"]


def test_a_retried_review_posts_and_closes_the_item(fake):
    posting = new_posting()
    fake.fail_with = [
        ConnectorError("no", transient=False, code="NOT_SUPPORTED_AT_SITE", status=501)
    ]
    processing.send_posting(posting.pk)
    Posting.objects.filter(pk=posting.pk).update(state=Posting.State.PENDING)

    assert processing.send_posting(posting.pk) == "posted"

    item = ReviewItem.objects.get(posting=posting)
    assert item.state == ReviewItem.State.RESOLVED
    assert "Posted as GL batch 000001" in item.resolution


def test_a_kind_with_no_sender_waits_for_a_person_instead_of_crashing(monkeypatch):
    monkeypatch.setattr(sending, "SENDER_MODULES", ())
    monkeypatch.delitem(sending._SENDERS, Posting.Kind.CUSTOMER, raising=False)
    txn = make_transaction()
    posting, _ = sending.create_posting(
        txn,
        make_connection(kind=Connection.Kind.SAGEPRO),
        Posting.Kind.CUSTOMER,
        {"custno": "ACME"},
    )

    assert processing.send_posting(posting.pk) == "needs review"
    assert "no sender is registered" in ReviewItem.objects.get(posting=posting).reason


def test_cash_receipts_cannot_be_registered_here():
    with pytest.raises(ValueError):
        sending.register(
            sending.DocumentSender(
                kind=Posting.Kind.CASH_RECEIPT,
                label="receipt",
                send=lambda c, p: {},
                find=lambda c, p: None,
                number=lambda a: "",
            )
        )


def test_queue_send_queues_the_send_posting_task(fake):
    from django_q.models import OrmQ

    posting = new_posting()
    sending.queue_send(posting)

    tasks = [row.task for row in OrmQ.objects.all()]
    assert [(t["func"], t["args"]) for t in tasks] == [
        ("integrations.tasks.send_posting", (posting.pk,))
    ]


def test_a_non_receipt_document_cannot_be_corrected_like_a_receipt(fake):
    from integrations import review

    posting = new_posting()
    fake.fail_with = [ConnectorError("no", transient=False, code="PERIOD_CLOSED")]
    processing.send_posting(posting.pk)
    item = ReviewItem.objects.get(posting=posting)

    refused = "GL batch postings cannot be corrected here"
    with pytest.raises(review.CorrectionRefused, match=refused):
        review.preview_correction(item, {"date": "2026-12-02"})
    with pytest.raises(review.CorrectionRefused, match=refused):
        review.correct_and_retry(item, None, {"date": "2026-12-02"})
    posting.refresh_from_db()
    assert posting.overrides in ({}, None)


def test_retrying_a_refused_document_names_it_in_the_preview_and_sends_nothing(fake):
    from integrations import review

    posting = new_posting()
    fake.fail_with = [ConnectorError("no", transient=False, code="PERIOD_CLOSED")]
    processing.send_posting(posting.pk)
    item = ReviewItem.objects.get(posting=posting)

    outcome = review.preview_retry(item)

    assert outcome.summary == f"Send GL batch posting {posting.pk} to Sage Pro again"
    assert fake.sent == {}
