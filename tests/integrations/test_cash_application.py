"""Payments written the way customers write them post themselves, through the real
pipeline (signed webhook → worker → Sage Pro sandbox), and the traps never do."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from integrations import mirror, review
from integrations.models import PaymentTransaction, Posting, ReviewItem
from integrations.sandbox.sagepro import ledger
from integrations.sandbox.sagepro.models import ArMast, CashReceipt
from mappings.models import PayerLink
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = pytest.mark.django_db
SLUG = "paytrace-sandbox"
D = Decimal


@pytest.fixture
def deliver(client, paytrace_conn, secret, http, run_tasks):
    def _deliver(record):
        body = event_body("transaction.approved", record)
        assert post_event(client, SLUG, body, sign(body, secret)).status_code == 202
        run_tasks()
        return PaymentTransaction.objects.get(
            transaction_id=str(record["transaction_id"])
        )

    return _deliver


@pytest.fixture
def company(sage, paytrace_conn):
    """Two customers the payer can be told apart by, and the mirror synced."""
    sage.seed_customer("BOLT", "Bolt & Nut Works, Inc.", email="ap@bolt.example")
    sage.seed_customer("CRANE", "Crane Hire LLC", email="pay@crane.example")

    def invoice(custno, amount, *, days_ago=10, ornum="", ponum="", invno=None):
        row = ledger.create_invoice(
            "01",
            custno,
            D(amount),
            timezone.localdate() - timedelta(days=days_ago),
            invno=invno,
            ornum=f"{ornum:>10}" if ornum else "",
            ponum=ponum,
        )
        return row.invno.strip()

    def sync():
        mirror.sync(paytrace_conn.sagepro, full=True)

    return {"invoice": invoice, "sync": sync}


def applications(txn):
    posting = txn.postings.filter(decided_automatically=True).first()
    if posting is None:
        return None
    receipt = CashReceipt.objects.get(reference=txn.transaction_id, deleted=False)
    return sorted(
        (line.invno.strip(), line.amount)
        for line in receipt.lines.filter(deleted=False)
    )


def open_items(txn):
    return list(
        ReviewItem.objects.filter(
            transaction=txn, state=ReviewItem.State.OPEN
        ).values_list("kind", flat=True)
    )


def balance(invno):
    return ArMast.objects.get(invno=invno.rjust(10)).balance


@pytest.mark.parametrize(
    "style", ["INV-{}", "Invoice #{}", "inv {}", "#{}", "Inv. {}", "No. {}", "00{}"]
)
def test_a_prefixed_reference_posts_itself(deliver, company, style):
    invno = company["invoice"]("BOLT", "410.20")
    company["sync"]()
    txn = deliver(paytrace_record(invoice_id=style.format(invno), amount=D("410.20")))
    assert applications(txn) == [(invno, D("410.20"))]
    assert not open_items(txn)
    assert txn.postings.get().match_method == "normalized"


def test_two_invoices_in_one_reference_post_together(deliver, company):
    a = company["invoice"]("BOLT", "100.00", days_ago=20)
    b = company["invoice"]("BOLT", "150.00", days_ago=5)
    company["sync"]()
    txn = deliver(paytrace_record(invoice_id=f"{a}, {b}", amount=D("250.00")))
    assert applications(txn) == [(a, D("100.00")), (b, D("150.00"))]
    assert (balance(a), balance(b)) == (D("0.00"), D("0.00"))
    assert not open_items(txn)


def test_a_transposed_reference_posts_when_customer_and_amount_confirm_it(
    deliver, company
):
    invno = company["invoice"]("BOLT", "333.17", invno="70451")
    company["sync"]()
    typo = "70415"  # names no invoice of any customer
    txn = deliver(
        paytrace_record(invoice_id=typo, customer_id="BOLT", amount=D("333.17"))
    )
    assert applications(txn) == [(invno, D("333.17"))]
    posting = txn.postings.get()
    assert posting.match_method == "near_miss"
    assert "transposed" in str(posting.decision)


def test_no_reference_and_a_payer_known_by_email_posts_to_the_one_matching_invoice(
    deliver, company
):
    company["invoice"]("CRANE", "90.00")
    target = company["invoice"]("CRANE", "57.35")
    company["sync"]()
    record = paytrace_record(invoice_id="", amount=D("57.35"))
    record["receipt_emailed_to"] = "Pay@Crane.example"
    txn = deliver(record)
    assert applications(txn) == [(target, D("57.35"))]
    explanation = txn.postings.get().decision
    assert explanation["method"] == "amount"
    assert "pay@crane.example" in explanation["customer_from"]


def test_a_po_number_and_an_order_number_find_their_invoices(deliver, company):
    by_po = company["invoice"]("BOLT", "77.00", ponum="PO-5521")
    by_order = company["invoice"]("BOLT", "88.00", ornum="4059001")
    company["sync"]()
    po = deliver(
        paytrace_record(invoice_id="", customer_reference_id="5521", amount=D("77.00"))
    )
    order = deliver(
        paytrace_record(
            invoice_id="SO 4059001", customer_reference_id="", amount=D("88.00")
        )
    )
    assert applications(po) == [(by_po, D("77.00"))]
    assert applications(order) == [(by_order, D("88.00"))]


def test_a_payer_mapping_a_reviewer_made_identifies_later_payments(
    deliver, company, django_user_model
):
    from integrations import learning

    company["invoice"]("CRANE", "40.00")
    first_target = company["invoice"]("CRANE", "61.00")
    company["sync"]()
    first = deliver(
        paytrace_record(invoice_id="", customer_id="V-9", amount=D("61.00"))
    )
    item = ReviewItem.objects.get(transaction=first, state=ReviewItem.State.OPEN)
    user = django_user_model.objects.create_user("rev")
    review.apply_review_item(item, first_target, user)
    learning.remember_payer(first, "CRANE", user)
    assert PayerLink.objects.filter(key="V-9", custno="CRANE").exists()

    later_target = company["invoice"]("CRANE", "12.50")
    company["sync"]()
    later = deliver(
        paytrace_record(invoice_id="", customer_id="V-9", amount=D("12.50"))
    )
    assert applications(later) == [(later_target, D("12.50"))]
    assert later.postings.get().payer_link.custno == "CRANE"


# --- traps: a person decides, nothing is applied ------------------------------------


def test_trap_another_customers_invoice_named_by_an_identified_payer(deliver, company):
    invno = company["invoice"]("CRANE", "45.00")
    company["sync"]()
    txn = deliver(
        paytrace_record(invoice_id=invno, customer_id="BOLT", amount=D("45.00"))
    )
    assert applications(txn) is None and not txn.postings.exists()
    assert open_items(txn) == ["unmatched"]
    assert balance(invno) == D("45.00")


def test_trap_two_equal_invoices_and_no_reference(deliver, company):
    a = company["invoice"]("BOLT", "64.00")
    b = company["invoice"]("BOLT", "64.00")
    company["sync"]()
    txn = deliver(paytrace_record(invoice_id="", customer_id="BOLT", amount=D("64.00")))
    assert not txn.postings.exists()
    assert open_items(txn) == ["unmatched"]
    assert (balance(a), balance(b)) == (D("64.00"), D("64.00"))
    assert txn.match_explanation["rejected"]


def test_trap_a_transposition_onto_an_invoice_with_another_amount(deliver, company):
    invno = company["invoice"]("BOLT", "310.00", invno="70451")
    company["sync"]()
    typo = "70415"
    txn = deliver(
        paytrace_record(invoice_id=typo, customer_id="BOLT", amount=D("301.00"))
    )
    assert not txn.postings.exists()
    assert balance(invno) == D("310.00")


def test_trap_a_conflicting_payer(deliver, company):
    invno = company["invoice"]("CRANE", "19.99")
    company["sync"]()
    record = paytrace_record(invoice_id="", customer_id="BOLT", amount=D("19.99"))
    record["receipt_emailed_to"] = "pay@crane.example"
    txn = deliver(record)
    assert not txn.postings.exists()
    assert balance(invno) == D("19.99")
    assert "different customers" in ReviewItem.objects.get(transaction=txn).reason


def test_trap_a_closed_invoice_is_never_paid_twice(deliver, company):
    invno = company["invoice"]("BOLT", "25.00")
    company["sync"]()
    deliver(paytrace_record(invoice_id=f"INV-{invno}", amount=D("25.00")))
    again = deliver(paytrace_record(invoice_id=f"Invoice {invno}", amount=D("25.00")))
    posting = again.postings.get()
    assert (
        posting.state == Posting.State.POSTED and posting.payload["applications"] == []
    )
    assert open_items(again) == ["possible_duplicate"]
    assert balance(invno) == D("0.00")


@pytest.mark.parametrize(
    "reference",
    [
        "N/A",
        "../../invoices/10001",
        "10001/../10002",
        "%2F10001",
        "10045-99999999999999999999999",
        "1" * 60,
        "‮10001",
        "INV\t10001\n10002",
        "'; DROP TABLE armast; --",
        "１００４５ ／ ２",
    ],
)
@pytest.mark.parametrize("synced", [True, False], ids=["mirror", "gateway"])
def test_a_hostile_reference_is_decided_never_crashes_the_worker(
    deliver, company, reference, synced
):
    if synced:
        company["sync"]()
    txn = deliver(paytrace_record(invoice_id=reference, amount=D("13.13")))
    event = txn.connection.events.get(transaction_id=txn.transaction_id)
    assert event.state == "processed", event.last_error
    assert txn.postings.exists() or open_items(txn)


def test_a_surcharge_within_three_percent_posts_and_keeps_the_excess_unapplied(
    deliver, company
):
    invno = company["invoice"]("BOLT", "200.00")
    company["sync"]()
    txn = deliver(paytrace_record(invoice_id=invno, amount=D("205.80")))
    assert applications(txn) == [(invno, D("200.00"))]
    assert txn.postings.get().unapplied_amount == D("5.80")
    assert not open_items(txn)


def test_a_range_posts_every_invoice_in_it(deliver, company):
    numbers = [
        company["invoice"]("BOLT", "10.00", invno=str(n)) for n in (71001, 71002, 71003)
    ]
    company["sync"]()
    txn = deliver(paytrace_record(invoice_id="71001-71003", amount=D("30.00")))
    assert applications(txn) == [(n, D("10.00")) for n in numbers]


def test_a_payer_known_by_billing_name_pays_one_combination(deliver, company):
    a = company["invoice"]("BOLT", "45.00", days_ago=40)
    b = company["invoice"]("BOLT", "30.00", days_ago=20)
    company["invoice"]("BOLT", "99.00", days_ago=5)
    company["sync"]()
    record = paytrace_record(invoice_id="", amount=D("75.00"))
    record["billing_address"]["name"] = "BOLT AND NUT WORKS"
    txn = deliver(record)
    assert applications(txn) == sorted([(a, D("45.00")), (b, D("30.00"))])
    assert txn.postings.get().match_method == "combination"


def test_trap_a_short_reference_never_pays_a_longer_number(deliver, company):
    invno = company["invoice"]("BOLT", "50.00", invno="99910")
    company["sync"]()
    txn = deliver(
        paytrace_record(invoice_id="991", customer_id="BOLT", amount=D("50.00"))
    )
    assert not txn.postings.exists()
    assert balance(invno) == D("50.00")


def test_three_reviewer_decisions_become_a_mapping_an_admin_accepts(
    deliver, company, django_user_model
):
    from integrations import learning
    from mappings.models import MatchingProposal

    reviewer = django_user_model.objects.create_user("rev")
    admin = django_user_model.objects.create_user("adm")
    for amount in ("11.00", "12.00", "13.00"):
        invno = company["invoice"]("CRANE", amount)
        company["invoice"]("CRANE", "500.00")
        company["sync"]()
        txn = deliver(
            paytrace_record(invoice_id="", customer_id="VAULT-77", amount=D(amount))
        )
        item = ReviewItem.objects.get(transaction=txn, state=ReviewItem.State.OPEN)
        review.apply_review_item(item, invno, reviewer)
    proposal = MatchingProposal.objects.get(subject="customer_id", key="VAULT-77")
    assert (proposal.state, proposal.value, proposal.agreeing) == ("open", "CRANE", 3)

    link = learning.accept(proposal, admin)
    target = company["invoice"]("CRANE", "14.00")
    company["sync"]()
    later = deliver(
        paytrace_record(invoice_id="", customer_id="VAULT-77", amount=D("14.00"))
    )
    assert applications(later) == [(target, D("14.00"))]
    assert later.postings.get().payer_link_id == link.pk
    assert learning.link_stats()[link.pk] == (1, 0)


def test_trap_a_part_payment_equal_to_another_open_invoice(deliver, company):
    named = company["invoice"]("BOLT", "500.00")
    other = company["invoice"]("BOLT", "334.58")
    company["sync"]()
    txn = deliver(paytrace_record(invoice_id=f"INV {named}", amount=D("334.58")))
    assert not txn.postings.exists()
    assert (balance(named), balance(other)) == (D("500.00"), D("334.58"))
    assert other in ReviewItem.objects.get(transaction=txn).reason


@pytest.mark.django_db(transaction=True)
def test_the_migrations_fill_the_keys_and_give_old_default_rules_the_standard_words():
    from django.db import connection as db
    from django.db.migrations.executor import MigrationExecutor

    from integrations.models import Connection
    from integrations.models.mirror import MirroredCustomer, MirroredInvoice

    before = [("integrations", "0008_duplicate_lookup_index")]
    MigrationExecutor(db).migrate(before)
    old = MigrationExecutor(db).loader.project_state(before).apps

    def make_connection(kind=Connection.Kind.PAYTRACE):
        # Rows as that schema stored them (later migrations add columns).
        n = old.get_model("integrations", "Connection").objects.count() + 1
        return old.get_model("integrations", "Connection").objects.create(
            kind=kind, name=f"{kind} {n}", slug=f"{kind}-{n}", base_url="https://x.test"
        )

    sage = make_connection(kind=Connection.Kind.SAGEPRO)
    old.get_model("integrations", "MirroredInvoice").objects.create(
        connection_id=sage.pk,
        invno="0010045",
        custno="ACME",
        ornum="  4053045",
        ponum="PO-7781",
    )
    old.get_model("integrations", "MirroredCustomer").objects.create(
        connection_id=sage.pk,
        custno="ACME",
        name="Acme Tools, Inc.",
        details={"email": "AP@acme.example; billing@acme.example"},
    )

    paytrace = make_connection()
    rules = old.get_model("mappings", "MatchingRule")
    rules.objects.create(connection_id=paytrace.pk, name="kept the old default")
    rules.objects.create(connection_id=paytrace.pk, name="own", strip_prefixes="REM")

    executor = MigrationExecutor(db)
    executor.migrate(executor.loader.graph.leaf_nodes())

    from mappings.models import STANDARD_PREFIXES, MatchingRule

    prefixes = dict(MatchingRule.objects.values_list("name", "strip_prefixes"))
    assert prefixes == {"kept the old default": STANDARD_PREFIXES, "own": "REM"}
    invoice = MirroredInvoice.objects.get(connection_id=sage.pk)
    assert (invoice.invno_key, invoice.ornum_key, invoice.ponum_key) == (
        "10045",
        "4053045",
        "7781",
    )
    customer = MirroredCustomer.objects.get(connection_id=sage.pk)
    assert customer.name_key == "ACME TOOLS"
    assert customer.emails == ";ap@acme.example;billing@acme.example;"


def test_dense_numbers_a_transposition_naming_another_customers_invoice(
    deliver, company
):
    """The seeded ledger numbers invoices 10001-10056 round robin over the customers,
    as a real one does: ACME's 10012 transposed is 10021, IRONWD's, and one edit from
    ACME's 10001 and 10023 too. The exact amount says which; IRONWD's is never paid."""
    acme = ArMast.objects.get(invno="10012".rjust(10))
    assert acme.custno.strip() == "ACME"
    assert ArMast.objects.get(invno="10021".rjust(10)).custno.strip() == "IRONWD"
    assert (
        not ArMast.objects.filter(
            custno=acme.custno, balance=acme.balance, deleted=False
        )
        .exclude(pk=acme.pk)
        .exists()
    )
    ironwood = balance("10021")
    company["sync"]()
    txn = deliver(
        paytrace_record(invoice_id="10021", customer_id="ACME", amount=acme.balance)
    )
    assert applications(txn) == [("10012", acme.balance)]
    assert balance("10021") == ironwood  # IRONWD's is never paid
    wrong = deliver(
        paytrace_record(invoice_id="10021", customer_id="ACME", amount=D("1.23"))
    )
    assert not wrong.postings.exists()
    assert (
        "belongs to customer IRONWD" in ReviewItem.objects.get(transaction=wrong).reason
    )


def test_the_issues_27_payments_on_the_demo_ledger_all_post_and_the_traps_do_not(
    deliver, sage
):
    """Issue 11's table, on the seeded demo ledger (dense invoice numbers, the mirror
    never synced): 8 exact, 6 prefixed, 4 pairs, 5 transposed with the customer id,
    4 without a reference; then another customer's invoice and two equal invoices."""
    rows = ArMast.objects.filter(deleted=False, balance__gt=0, artype="").order_by(
        "invno"
    )
    free = {}
    for row in rows:
        free.setdefault(row.custno.strip(), []).append(row)
    customers = [c for c in free if c != "HOLDCO"]

    def take(custno):
        row = free[custno].pop(0)
        return row.invno.strip(), row.balance

    outcomes = []

    def pay(style, expected, **record):
        txn = deliver(paytrace_record(**record))
        outcomes.append((style, record.get("invoice_id"), applications(txn), expected))

    for custno in customers[:8]:
        invno, amount = take(custno)
        pay("exact", [(invno, amount)], invoice_id=invno, amount=amount)
    for style, custno in zip(
        ["INV-{}", "Invoice #{}", "inv {}", "#{}", "Inv. {}", "No. {}"],
        customers[:6],
        strict=True,
    ):
        invno, amount = take(custno)
        pay("prefix", [(invno, amount)], invoice_id=style.format(invno), amount=amount)
    for custno in customers[:4]:
        (a, x), (b, y) = take(custno), take(custno)
        pay("two", sorted([(a, x), (b, y)]), invoice_id=f"{a}, {b}", amount=x + y)
    for custno in customers[4:9]:
        invno, amount = take(custno)
        typo = invno[:-2] + invno[-1] + invno[-2]
        pay(
            "transposed",
            [(invno, amount)],
            invoice_id=typo,
            customer_id=custno,
            amount=amount,
        )
    for custno in customers[:4]:
        invno, amount = take(custno)
        pay(
            "no reference",
            [(invno, amount)],
            invoice_id="",
            customer_id=custno,
            amount=amount,
        )

    missed = [o for o in outcomes if o[2] != o[3]]
    assert not missed, missed
    assert len(outcomes) == 27

    other, amount = take(customers[-1])  # another customer's invoice, paid by ACME
    trap = deliver(paytrace_record(invoice_id=other, customer_id="ACME", amount=amount))
    assert not trap.postings.exists() and balance(other) == amount
    twins = [sage.seed_invoice("GRANIT", "77.77"), sage.seed_invoice("GRANIT", "77.77")]
    trap = deliver(
        paytrace_record(invoice_id="", customer_id="GRANIT", amount=D("77.77"))
    )
    assert not trap.postings.exists()
    assert [balance(t) for t in twins] == [D("77.77"), D("77.77")]
