"""Learning from reviewers: proposals counted from decisions, accepted or rejected by an
admin, payers remembered at once, and what rules and mappings decided."""

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection as db_connection
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from reversion.models import Version

from integrations import learning
from integrations.models import Connection, Posting, ReviewDecision, ReviewItem
from integrations.roles import FINANCE_REVIEWER, INTEGRATION_ADMIN
from mappings.models import MatchingProposal, MatchingRule, PayerLink
from mappings.references import parse_reference
from tests.factories import (
    make_connection,
    make_posting,
    make_review_item,
    make_transaction,
    make_user,
)

pytestmark = pytest.mark.django_db

State = MatchingProposal.State
ACME_RECORD = {
    "billing_address": {"name": "Acme Tools, Inc."},
    "receipt_emailed_to": "AP@Acme.example",
}


@pytest.fixture
def paytrace():
    sagepro = make_connection(kind=Connection.Kind.SAGEPRO)
    return make_connection(sagepro=sagepro)


@pytest.fixture
def reviewer():
    return make_user(group=FINANCE_REVIEWER, username="rita")


@pytest.fixture
def admin_user():
    return make_user(group=INTEGRATION_ADMIN, username="adam")


def acme_item(paytrace, reference="", **fields):
    """An unmatched payment from Acme's accounts payable (no PayTrace customer id)."""
    fields.setdefault("source_record", ACME_RECORD)
    fields.setdefault("customer_reference", "")
    txn = make_transaction(paytrace, invoice_reference=reference, **fields)
    return make_review_item(txn)


def decide(paytrace, user, custno="ACME", invnos=("10045",), times=1, **fields):
    items = []
    for _ in range(times):
        item = acme_item(paytrace, **fields)
        learning.observe(item, custno, list(invnos), user)
        items.append(item)
    return items


def payer_proposals(**filters):
    return MatchingProposal.objects.filter(
        kind=MatchingProposal.Kind.PAYER_LINK, **filters
    )


# --- payer → customer ---------------------------------------------------------------------


def test_it_proposes_a_customer_mapping_after_three_agreeing_decisions(
    paytrace, reviewer
):
    decide(paytrace, reviewer, times=2)
    email = payer_proposals().get(subject="email")
    assert (email.key, email.value, email.agreeing, email.state) == (
        "ap@acme.example",
        "ACME",
        2,
        State.LEARNING,
    )

    decide(paytrace, reviewer)

    email.refresh_from_db()
    name = payer_proposals().get(subject="name")
    assert (email.state, email.agreeing, email.disagreeing) == (State.OPEN, 3, 0)
    assert (name.key, name.value, name.state) == ("ACME TOOLS", "ACME", State.OPEN)
    assert [e["user"] for e in email.evidence] == ["rita", "rita", "rita"]
    assert {e["custno"] for e in email.evidence} == {"ACME"}
    assert not payer_proposals(subject="card").exists()  # no expiry: no card key


def test_a_disagreeing_decision_sends_an_open_proposal_back_to_learning(
    paytrace, reviewer
):
    decide(paytrace, reviewer, times=3)

    decide(paytrace, reviewer, custno="ACMEWEST", invnos=())

    acme = payer_proposals().get(subject="email", value="ACME")
    west = payer_proposals().get(subject="email", value="ACMEWEST")
    assert (acme.state, acme.agreeing, acme.disagreeing) == (State.LEARNING, 3, 1)
    assert acme.evidence[-1]["agrees"] is False
    assert (west.state, west.agreeing, west.disagreeing) == (State.LEARNING, 1, 0)

    decide(paytrace, reviewer, times=3)  # never opens again with a disagreement
    acme.refresh_from_db()
    assert (acme.state, acme.agreeing) == (State.LEARNING, 6)


def test_keys_an_active_mapping_already_covers_are_not_learned(paytrace, reviewer):
    PayerLink.objects.create(
        connection=paytrace, kind="email", key="ap@acme.example", custno="ACME"
    )

    decide(paytrace, reviewer)

    assert list(payer_proposals().values_list("subject", flat=True)) == ["name"]


def test_the_evidence_keeps_the_latest_twenty_decisions(paytrace, reviewer):
    items = decide(paytrace, reviewer, times=22)

    proposal = payer_proposals().get(subject="email")
    assert proposal.agreeing == 22
    assert len(proposal.evidence) == 20
    assert proposal.evidence[-1]["item"] == items[-1].pk
    assert proposal.evidence[-1]["transaction"] == items[-1].transaction.transaction_id
    assert set(proposal.evidence[0]) >= {"transaction", "item", "user", "at"}


def test_learning_that_fails_is_logged_and_the_decision_stands(
    paytrace, reviewer, monkeypatch, caplog
):
    item = acme_item(paytrace)

    def broken(txn):
        raise RuntimeError("payer unreadable")

    monkeypatch.setattr(learning, "payer_of", broken)
    with (
        caplog.at_level(logging.ERROR, logger="integrations.learning"),
        transaction.atomic(),
    ):
        learning.observe(item, "ACME", ["10045"], reviewer)
        # The decision's transaction is still usable (PostgreSQL would refuse every
        # later statement after an error outside a savepoint).
        ReviewItem.objects.filter(pk=item.pk).update(reason="still here")

    assert "the decision stands" in caplog.text
    assert ReviewItem.objects.get(pk=item.pk).reason == "still here"
    assert not MatchingProposal.objects.exists()


def test_a_database_error_while_learning_leaves_the_decision_usable(
    paytrace, reviewer, monkeypatch
):
    item = acme_item(paytrace)

    def failing_query(txn, custno, entry):
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    monkeypatch.setattr(learning, "_learn_payer", failing_query)
    with transaction.atomic():
        learning.observe(item, "ACME", [], reviewer)
        ReviewItem.objects.filter(pk=item.pk).update(reason="still here")

    assert ReviewItem.objects.get(pk=item.pk).reason == "still here"


def test_a_decision_on_an_item_without_a_transaction_teaches_nothing(reviewer):
    item = ReviewItem.objects.create(kind="card_data", reason="Card data sent")

    learning.observe(item, "ACME", [], reviewer)

    assert not MatchingProposal.objects.exists()


# --- reference style → prefix word ---------------------------------------------------------


def prefix_proposals(**filters):
    return MatchingProposal.objects.filter(kind=MatchingProposal.Kind.PREFIX, **filters)


def test_a_word_glued_to_the_invoice_number_is_proposed_as_a_prefix(paytrace, reviewer):
    decide(paytrace, reviewer, times=3, reference="REM10045")

    proposal = prefix_proposals().get()
    assert (proposal.subject, proposal.key, proposal.value) == ("prefix", "REM", "REM")
    assert (proposal.state, proposal.agreeing, proposal.rule) == (State.OPEN, 3, None)


def test_a_word_that_keeps_a_reference_from_being_clean_is_proposed(paytrace, reviewer):
    decide(paytrace, reviewer, reference="Rechnung 10045")

    assert prefix_proposals().get().key == "RECHNUNG"


def test_references_the_rule_already_reads_teach_no_prefix(paytrace, reviewer):
    for reference in ("INV-10045", "Invoice #10045", "10045", "Rechnung 10045 danke"):
        decide(paytrace, reviewer, reference=reference)

    assert not prefix_proposals().exists()


def test_choosing_another_invoice_for_the_same_word_disagrees(paytrace, reviewer):
    decide(paytrace, reviewer, times=3, reference="REM10045")

    decide(paytrace, reviewer, reference="REM10777", invnos=["10045"])
    decide(paytrace, reviewer, reference="REM10046", invnos=())  # on account: no vote

    proposal = prefix_proposals().get()
    assert (proposal.state, proposal.agreeing, proposal.disagreeing) == (
        State.LEARNING,
        3,
        1,
    )


def test_the_prefix_is_learned_for_the_rule_that_decided(paytrace, reviewer):
    rule = MatchingRule.objects.create(
        connection=paytrace, name="Card payments", strip_prefixes="INV,#"
    )

    decide(
        paytrace,
        reviewer,
        reference="Rechnung-10045",
        match_explanation={"rule_id": rule.pk, "rule": rule.name},
    )

    assert prefix_proposals().get().rule == rule


# --- an admin accepts or rejects ------------------------------------------------------------


def open_payer_proposal(paytrace, reviewer, subject="email"):
    decide(paytrace, reviewer, times=3)
    return payer_proposals().get(subject=subject)


def test_accepting_a_payer_proposal_creates_the_customer_mapping(
    paytrace, reviewer, admin_user
):
    proposal = open_payer_proposal(paytrace, reviewer)

    link = learning.accept(proposal, admin_user)

    assert (link.kind, link.key, link.custno, link.is_active) == (
        "email",
        "ap@acme.example",
        "ACME",
        True,
    )
    assert (link.source, link.created_by) == (PayerLink.Source.PROPOSAL, admin_user)
    assert "Learned from 3 reviewer decisions" in link.evidence
    assert "rita" in link.evidence
    proposal.refresh_from_db()
    assert (proposal.state, proposal.decided_by) == (State.ACCEPTED, admin_user)
    assert proposal.decided_at is not None
    assert PayerLink.links_for(paytrace)[0].custno == "ACME"


def test_accepting_twice_is_accepting_once(paytrace, reviewer, admin_user):
    proposal = open_payer_proposal(paytrace, reviewer)

    first = learning.accept(proposal, admin_user)
    again = learning.accept(proposal, admin_user)

    assert first.pk == again.pk
    assert PayerLink.objects.count() == 1


def test_accepting_re_activates_an_inactive_mapping(paytrace, reviewer, admin_user):
    old = PayerLink.objects.create(
        connection=paytrace,
        kind="email",
        key="ap@acme.example",
        custno="OLDCO",
        is_active=False,
    )
    proposal = open_payer_proposal(paytrace, reviewer)

    link = learning.accept(proposal, admin_user)

    old.refresh_from_db()
    assert link.pk == old.pk
    assert (old.custno, old.is_active, old.source) == ("ACME", True, "proposal")


def test_a_proposal_that_would_overwrite_another_customer_is_refused(
    paytrace, reviewer, admin_user
):
    proposal = open_payer_proposal(paytrace, reviewer)
    PayerLink.objects.create(
        connection=paytrace, kind="email", key="ap@acme.example", custno="OTHER"
    )

    with pytest.raises(learning.LearningError, match="already names customer OTHER"):
        learning.accept(proposal, admin_user)

    proposal.refresh_from_db()
    assert proposal.state == State.OPEN
    assert PayerLink.objects.get().custno == "OTHER"


def test_only_an_open_proposal_can_be_accepted(paytrace, reviewer, admin_user):
    decide(paytrace, reviewer)
    learning_one = payer_proposals().get(subject="email")

    with pytest.raises(learning.LearningError, match="only a proposed one"):
        learning.accept(learning_one, admin_user)

    learning.reject(learning_one, admin_user)
    with pytest.raises(learning.LearningError, match="rejected"):
        learning.accept(learning_one, admin_user)
    assert not PayerLink.objects.exists()


def test_a_rejected_proposal_never_reopens_by_itself(paytrace, reviewer, admin_user):
    proposal = open_payer_proposal(paytrace, reviewer)

    learning.reject(proposal, admin_user)
    learning.reject(proposal, admin_user)  # twice is once
    decide(paytrace, reviewer, times=3)

    proposal.refresh_from_db()
    assert (proposal.state, proposal.agreeing) == (State.REJECTED, 6)
    assert proposal.decided_by == admin_user


def test_accepting_a_prefix_without_rules_creates_the_standard_rule(
    paytrace, reviewer, admin_user
):
    decide(paytrace, reviewer, times=3, reference="REM10045")
    proposal = prefix_proposals().get()

    rule = learning.accept(proposal, admin_user)
    learning.accept(proposal, admin_user)

    assert isinstance(rule, MatchingRule)
    assert (rule.connection, rule.name) == (paytrace, "Standard matching")
    assert rule.reference_mode == MatchingRule.ReferenceMode.NORMALIZED
    assert rule.strip_prefixes.split(",")[-1] == "REM"
    assert rule.strip_prefixes.count("REM") == 1
    assert MatchingRule.objects.count() == 1
    proposal.refresh_from_db()
    assert (proposal.state, proposal.rule) == (State.ACCEPTED, rule)
    prefixes = rule.as_rule().strip_prefixes
    read = parse_reference("REM10045", prefixes)
    assert (read.keys, read.clean) == (["10045"], True)
    versions = Version.objects.get_for_object(rule)
    assert "learned proposal" in versions.first().revision.comment


def test_accepting_a_prefix_adds_it_to_the_rule_that_decided(
    paytrace, reviewer, admin_user
):
    other = MatchingRule.objects.create(connection=paytrace, name="Big", priority=5)
    rule = MatchingRule.objects.create(
        connection=paytrace, name="Card payments", strip_prefixes="INV,#"
    )
    decide(
        paytrace,
        reviewer,
        times=3,
        reference="REM10045",
        match_explanation={"rule_id": rule.pk},
    )

    learning.accept(prefix_proposals().get(), admin_user)

    rule.refresh_from_db()
    other.refresh_from_db()
    assert rule.strip_prefixes == "INV,#,REM"
    assert "REM" not in other.strip_prefixes.split(",")


def test_a_standard_rule_created_for_a_prefix_comes_after_the_other_rules(
    paytrace, reviewer, admin_user
):
    MatchingRule.objects.create(
        connection=paytrace, name="Only ACME", priority=300, customer_pattern="ACME"
    )
    decide(
        paytrace,
        reviewer,
        times=3,
        reference="REM10045",
        match_explanation={"rule_id": None},
    )

    rule = learning.accept(prefix_proposals().get(), admin_user)

    assert (rule.name, rule.priority) == ("Standard matching", 310)


# --- a reviewer remembers a payer ---------------------------------------------------------


def test_remember_maps_the_payers_id_email_and_name(paytrace, reviewer):
    txn = make_transaction(
        paytrace,
        customer_reference="vault-77",
        source_record={
            **ACME_RECORD,
            "credit_card": {"expiration_month": 4, "expiration_year": 29},
        },
    )

    links = learning.remember_payer(txn, " acme ", reviewer)

    assert sorted((link.kind, link.key, link.custno) for link in links) == [
        ("customer_id", "VAULT-77", "ACME"),
        ("email", "ap@acme.example", "ACME"),
        ("name", "ACME TOOLS", "ACME"),
    ]
    assert {link.source for link in links} == {PayerLink.Source.REVIEWER}
    assert "Remembered by rita" in links[0].evidence

    card = learning.remember_payer(txn, "ACME", reviewer, kinds=["card"])
    assert [(link.kind, link.key) for link in card] == [("card", "VISA 1111 04/29")]


def test_remember_never_overwrites_another_customers_mapping(paytrace, reviewer):
    PayerLink.objects.create(
        connection=paytrace, kind="name", key="Acme Tools", custno="ACMEWEST"
    )
    txn = make_transaction(paytrace, customer_reference="", source_record=ACME_RECORD)

    with pytest.raises(learning.LearningError) as refused:
        learning.remember_payer(txn, "ACME", reviewer)

    assert "ACMEWEST" in str(refused.value)
    assert "Customer mappings" in str(refused.value)
    assert PayerLink.objects.count() == 1  # nothing saved


def test_remember_keeps_a_mapping_that_already_says_so(paytrace, reviewer):
    existing = PayerLink.objects.create(
        connection=paytrace, kind="email", key="ap@acme.example", custno="ACME"
    )
    txn = make_transaction(paytrace, customer_reference="", source_record=ACME_RECORD)

    links = learning.remember_payer(txn, "ACME", reviewer)

    assert existing.pk in {link.pk for link in links}
    assert PayerLink.objects.count() == 2


def test_remember_needs_something_to_remember_the_payer_by(paytrace, reviewer):
    txn = make_transaction(paytrace, customer_reference="", source_record={})

    with pytest.raises(learning.LearningError, match="nothing to remember it by"):
        learning.remember_payer(txn, "ACME", reviewer)


# --- what rules and mappings decided -------------------------------------------------------


def automatic_posting(paytrace, rule=None, link=None, **fields):
    return make_posting(
        make_transaction(paytrace),
        decided_automatically=True,
        match_rule=rule,
        payer_link=link,
        created_at=timezone.now() - timedelta(hours=2),
        **fields,
    )


def reviewer_decision(posting, action, hours_ago):
    item = make_review_item(posting.transaction, kind="overpayment")
    return ReviewDecision.objects.create(
        item=item, action=action, at=timezone.now() - timedelta(hours=hours_ago)
    )


def test_stats_count_automatic_decisions_and_later_changes(
    paytrace, django_assert_max_num_queries
):
    rule = MatchingRule.objects.create(connection=paytrace, name="Card payments")
    link = PayerLink.objects.create(
        connection=paytrace, kind="email", key="ap@acme.example", custno="ACME"
    )
    changed = automatic_posting(paytrace, rule, link)
    reviewer_decision(changed, "apply", hours_ago=1)
    noted = automatic_posting(paytrace, rule, link)
    reviewer_decision(noted, "note", hours_ago=1)  # a note changes nothing
    before = automatic_posting(paytrace, rule)
    reviewer_decision(before, "on_account", hours_ago=3)  # before the posting
    automatic_posting(paytrace)  # the built-in standard rule
    standard_changed = automatic_posting(paytrace)
    reviewer_decision(standard_changed, "mark_duplicate", hours_ago=1)
    make_posting(make_transaction(paytrace), match_rule=rule)  # placed by a person

    with django_assert_max_num_queries(1):
        rules = learning.rule_stats()
    with django_assert_max_num_queries(1):
        links = learning.link_stats()

    assert rules == {rule.pk: (3, 1), None: (2, 1)}
    assert links == {link.pk: (2, 1)}


# --- the admin pages ----------------------------------------------------------------------


@pytest.fixture
def admin_client(admin_user):
    browser = Client()
    browser.force_login(admin_user)
    return browser


@pytest.fixture
def reviewer_client(reviewer):
    browser = Client()
    browser.force_login(reviewer)
    return browser


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def test_the_proposals_list_shows_open_ones_and_accepts_them(
    admin_client, paytrace, reviewer, admin_user
):
    proposal = open_payer_proposal(paytrace, reviewer)
    decide(
        paytrace,
        reviewer,
        custno="OTHER",
        invnos=(),
        customer_reference="X-1",
        source_record={},
    )
    url = reverse("admin:mappings_matchingproposal_changelist")

    page = admin_client.get(url)
    assert page.status_code == 200
    listed = {p.subject for p in page.context["cl"].result_list}
    assert listed == {"email", "name"}  # open ones; the learning one is filtered out
    everything = admin_client.get(url + "?state=all")
    assert len(everything.context["cl"].result_list) == 3
    assert "e-mail ap@acme.example is customer ACME" in page.text

    response = admin_client.post(
        url,
        {"action": "accept_selected", "_selected_action": [proposal.pk]},
        follow=True,
    )

    assert "Accepted 1 proposal." in messages_of(response)
    proposal.refresh_from_db()
    assert proposal.state == State.ACCEPTED
    assert PayerLink.objects.get().custno == "ACME"


def test_a_proposals_page_shows_its_evidence_and_buttons(
    admin_client, paytrace, reviewer
):
    proposal = open_payer_proposal(paytrace, reviewer)
    page_url = reverse("admin:mappings_matchingproposal_change", args=[proposal.pk])

    page = admin_client.get(page_url)

    assert page.status_code == 200
    assert "portal-accept" in page.text
    assert "Learned from" in page.text
    assert page.text.count("agrees") >= 3
    assert "identified as customer ACME" in page.text
    accept = reverse(
        "admin:mappings_matchingproposal_decide", args=[proposal.pk, "accept"]
    )
    response = admin_client.post(accept, follow=True)
    assert response.redirect_chain[-1][0] == page_url
    assert messages_of(response)[0].startswith("Accepted: E-mail ap@acme.example")
    again = admin_client.post(
        reverse("admin:mappings_matchingproposal_decide", args=[proposal.pk, "reject"]),
        follow=True,
    )
    assert "already accepted" in messages_of(again)[0]


def test_a_reviewer_sees_proposals_but_cannot_decide_them(
    reviewer_client, paytrace, reviewer
):
    proposal = open_payer_proposal(paytrace, reviewer)

    page = reviewer_client.get(
        reverse("admin:mappings_matchingproposal_change", args=[proposal.pk])
    )
    refused = reviewer_client.post(
        reverse("admin:mappings_matchingproposal_decide", args=[proposal.pk, "accept"])
    )

    assert page.status_code == 200
    assert "portal-accept" not in page.text
    assert refused.status_code == 403
    assert reviewer_client.get(
        reverse("admin:mappings_payerlink_changelist")
    ).status_code == (200)
    assert (
        reviewer_client.get(reverse("admin:mappings_payerlink_add")).status_code == 403
    )


def test_a_mapping_added_by_hand_is_normalised_and_counted(admin_client, paytrace):
    response = admin_client.post(
        reverse("admin:mappings_payerlink_add"),
        {
            "connection": paytrace.pk,
            "kind": "name",
            "key": "  Acme Tools, Inc. ",
            "custno": "acme",
            "is_active": "on",
            "evidence": "Phoned their AP",
        },
    )
    assert response.status_code == 302
    link = PayerLink.objects.get()
    assert (link.key, link.custno, link.source) == ("ACME TOOLS", "ACME", "admin")
    duplicate = admin_client.post(
        reverse("admin:mappings_payerlink_add"),
        {
            "connection": paytrace.pk,
            "kind": "name",
            "key": "ACME TOOLS LLC",
            "custno": "X",
        },
    )
    assert duplicate.status_code == 200  # the same normalised key: refused
    assert PayerLink.objects.count() == 1
    automatic_posting(paytrace, link=link)

    page = admin_client.get(reverse("admin:mappings_payerlink_changelist") + "?q=acme")

    assert [r.portal_stats for r in page.context["cl"].result_list] == [(1, 0)]


def test_the_rules_list_says_when_the_standard_rule_applies(admin_client, paytrace):
    automatic_posting(paytrace)
    url = reverse("admin:mappings_matchingrule_changelist")

    page = admin_client.get(url)

    assert "The built-in standard rule applies" in page.text
    assert paytrace.name in page.text
    assert "It placed 1 payment without review" in page.text
    add = admin_client.get(
        reverse("admin:mappings_matchingrule_add") + f"?connection={paytrace.pk}"
    )
    form = add.context["adminform"].form
    assert form.initial["connection"] == str(paytrace.pk)
    assert form["reference_mode"].value() == "normalized"
    assert form["tolerance_type"].value() == "percent"
    assert Decimal(form["tolerance_value"].value()) == Decimal("3.00")
    for flag in ("multiple_invoices", "near_misses", "identify_payer", "by_amount"):
        assert form[flag].value() is True

    rule = MatchingRule.objects.create(connection=paytrace, name="Card payments")
    automatic_posting(paytrace, rule)
    page = admin_client.get(url)

    assert "The built-in standard rule applies" not in page.text
    assert [r.portal_stats for r in page.context["cl"].result_list] == [(1, 0)]
    assert "Changed by a reviewer" in page.text


def test_the_transaction_page_explains_its_decision(reviewer_client, paytrace):
    txn = make_transaction(
        paytrace,
        match_explanation={
            "rule": "built-in standard",
            "rule_id": None,
            "method": "normalized",
            "method_label": "invoice number, normalised",
            "customer": "ACME",
            "customer_from": "customer ACME, the invoice's",
            "steps": [{"label": "Reference", "text": "'INV-10045' read as 10045"}],
            "rejected": [{"invno": "10054", "why": "belongs to customer BLUEOX"}],
            "outcome": "applied without review",
            "reason": "Applied to invoice 10045.",
            "applications": [["10045", "33.00"]],
        },
    )

    page = reviewer_client.get(
        reverse("admin:integrations_paymenttransaction_change", args=[txn.pk])
    )

    assert page.status_code == 200
    for text in (
        "Why this decision",
        "invoice number, normalised",
        "customer ACME, the invoice&#x27;s",
        "&#x27;INV-10045&#x27; read as 10045",
        "belongs to customer BLUEOX",
        "applied without review",
        "invoice 10045: 33.00",
    ):
        assert text in page.text


def test_a_transaction_without_a_decision_says_so(reviewer_client, paytrace):
    txn = make_transaction(paytrace)

    page = reviewer_client.get(
        reverse("admin:integrations_paymenttransaction_change", args=[txn.pk])
    )

    assert "No automatic decision is recorded" in page.text


def test_the_posting_page_shows_its_decision(admin_client, paytrace):
    posting = automatic_posting(
        paytrace, decision={"rule": "built-in standard", "outcome": "applied"}
    )

    page = admin_client.get(
        reverse("admin:integrations_posting_change", args=[posting.pk])
    )

    assert "The automatic decision that made this posting" in page.text


def test_the_review_item_page_explains_and_offers_to_remember(
    reviewer_client, paytrace_conn, sage, http
):
    invno = sage.seed_invoice("ACME", "33.00")
    txn = make_transaction(
        paytrace_conn,
        amount=Decimal("33.00"),
        invoice_reference="see email",
        customer_reference="",
        source_record=ACME_RECORD,
        match_explanation={
            "rule": "built-in standard",
            "outcome": "sent to review (unmatched)",
            "customer_from": "the payer is not known",
            "steps": [{"label": "Reference", "text": "'see email' holds no number"}],
        },
    )
    item = make_review_item(txn)
    page_url = reverse("admin:integrations_reviewitem_change", args=[item.pk])

    page = reviewer_client.get(page_url)
    assert "Why this decision" in page.text
    assert "sent to review (unmatched)" in page.text
    assert "Remember: this payer is customer ACME" in page.text

    response = confirmed(
        reviewer_client,
        reverse("admin:integrations_reviewitem_decide", args=[item.pk, "apply"]),
        {"invno": invno, "remember": "1"},
        follow=True,
    )

    said = messages_of(response)
    assert said[0].endswith("The receipt is queued for Sage Pro.")
    assert said[1].startswith("Remembered: this payer (")
    assert "customer ACME" in said[1]
    assert sorted(PayerLink.objects.values_list("kind", "custno")) == [
        ("email", "ACME"),
        ("name", "ACME"),
    ]


def test_applying_without_remember_maps_nobody(
    reviewer_client, paytrace_conn, sage, http
):
    invno = sage.seed_invoice("ACME", "33.00")
    txn = make_transaction(
        paytrace_conn,
        amount=Decimal("33.00"),
        invoice_reference="see email",
        customer_reference="",
        source_record=ACME_RECORD,
    )
    item = make_review_item(txn)

    response = confirmed(
        reviewer_client,
        reverse("admin:integrations_reviewitem_decide", args=[item.pk, "apply"]),
        {"invno": invno},
        follow=True,
    )

    assert len(messages_of(response)) == 1
    assert not PayerLink.objects.exists()
    assert Posting.objects.filter(transaction=txn).exists()


def confirmed(browser, url, data, **kwargs):
    """Post a money action and confirm the outcome it shows, as a reviewer does
    (issue 13: nothing posts before its outcome was shown and confirmed)."""
    shown = browser.post(url, data, **kwargs)
    context = shown.context if shown.status_code == 200 else None
    if context is not None and context.get("fingerprint"):  # a bulk action's page
        data = data | {"confirmed": context["fingerprint"]}
    elif context is not None and context.get("outcome") is not None:
        data = data | {"confirm": context["outcome"].fingerprint}
    else:
        return shown
    return browser.post(url, data, **kwargs)
