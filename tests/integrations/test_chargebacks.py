"""Chargebacks: the dispute report import, the admin form, and their GL batches in
the Sage Pro sandbox (issue 14, acceptance 4)."""

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine

from integrations import chargebacks
from integrations.models import Posting, ReviewItem
from integrations.models.chargebacks import Chargeback, ChargebackEvent, DisputeImport
from integrations.sandbox.sagepro import seed
from integrations.sandbox.sagepro.models import SycDfis
from integrations.sandbox.sagepro.orders_models import GlBatch
from mappings.gl import Purpose
from mappings.models import GlRule
from tests.factories import make_posting, make_transaction

pytestmark = pytest.mark.django_db
FIXTURE = Path(__file__).parent.parent / "fixtures" / "dispute_report.csv"
NOW = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)


@pytest.fixture
def world(http, paytrace_conn, sagepro_conn):
    """The sandbox seeded late in November 2026 (the fixture's month, open), the
    payments the fixture names, and GL rules for every chargeback account."""
    with time_machine.travel(NOW, tick=False):
        seed.seed()
        for purpose, account in (
            (Purpose.RECEIPT, "1100-00"),
            (Purpose.CHARGEBACK, "1200-00"),
            (Purpose.CHARGEBACK_LOSS, "6100-00"),
            (Purpose.CHARGEBACK_FEE, "6100-00"),
        ):
            GlRule.objects.create(
                connection=paytrace_conn, name=purpose, account=account, purpose=purpose
            )
        sales = {}
        for tid, amount in (
            ("9000001", "100.00"),
            ("9000002", "25.00"),
            ("9000003", "60.00"),
            ("9000004", "100.00"),
        ):
            sales[tid] = make_transaction(
                paytrace_conn, transaction_id=tid, amount=Decimal(amount)
            )
        make_posting(
            sales["9000001"],
            sagepro=sagepro_conn,
            state=Posting.State.POSTED,
            gl_account="1000-00",
            document_number="R1",
        )
        yield paytrace_conn


def batch_lines(batch):
    return sorted(
        (line.glacnt.strip(), line.gldamnt, line.glcamnt) for line in batch.lines.all()
    )


def assert_balanced_and_open(batches):
    for batch in batches:
        lines = list(batch.lines.all())
        assert lines, batch.batchno
        assert sum(x.gldamnt for x in lines) == sum(x.glcamnt for x in lines)
        period = SycDfis.objects.get(yearprd=batch.yearprd, deleted=False)
        assert not (period.pclosed or period.plocked or period.permlck)


def test_an_import_creates_the_good_chargebacks_and_names_the_bad_rows(
    world, run_tasks
):
    with time_machine.travel(NOW, tick=False):
        record = chargebacks.import_report(
            world, "dispute_report.csv", FIXTURE.read_bytes()
        )
        run_tasks()

    assert record.state == DisputeImport.State.IMPORTED
    assert (record.row_count, record.good_count, record.bad_count) == (11, 4, 7)
    assert record.created_count == 4
    bad = {r["line"]: " ".join(r["errors"]) for r in record.results if r["errors"]}
    assert bad == {
        5: "unknown transaction id 9999999",
        6: "amount '=1+2' is not a number",
        7: "amount 500.00 is more than the payment's 100.00",
        8: "bad opened date '31/31/2026' (expected MM/DD/YYYY)",
        9: "unknown state 'Appealed' (expected opened, won or lost)",
        10: "case CB-1001 is already on line 2 of this file",
        12: "missing column 'Dispute Amount' no amount missing column 'Status' "
        "no state missing column 'Received Date' no opened date",
    }
    states = dict(Chargeback.objects.values_list("case_number", "state"))
    assert states == {
        "CB-1001": "opened",
        "CB-1002": "lost",
        "CB-1003": "won",
        "CB-1009": "opened",
    }
    lost = Chargeback.objects.get(case_number="CB-1002")
    assert lost.amount == Decimal("25.00")
    assert lost.resolved_on == date(2026, 11, 18)
    assert lost.source == Chargeback.Source.IMPORT
    assert lost.dispute_import == record


def test_each_state_change_posts_one_balanced_batch_in_an_open_period(world, run_tasks):
    with time_machine.travel(NOW, tick=False):
        chargebacks.import_report(world, "report.csv", FIXTURE.read_bytes())
        run_tasks()

    postings = Posting.objects.filter(kind=Posting.Kind.GL_BATCH)
    assert postings.count() == 6  # 4 opened, 1 lost, 1 won
    assert set(postings.values_list("state", flat=True)) == {Posting.State.POSTED}
    batches = GlBatch.objects.all()
    assert batches.count() == 6
    assert_balanced_and_open(batches)
    by_number = {b.batchno.strip(): b for b in batches}

    def lines_of(case, state):
        event = ChargebackEvent.objects.get(chargeback__case_number=case, state=state)
        return batch_lines(by_number[event.posting.document_number.strip()])

    # opened: the chargeback account against the receipt's own cash account, + fee
    assert lines_of("CB-1001", "opened") == [
        ("1000-00", Decimal("0.00"), Decimal("15.00")),
        ("1000-00", Decimal("0.00"), Decimal("40.00")),
        ("1200-00", Decimal("40.00"), Decimal("0.00")),
        ("6100-00", Decimal("15.00"), Decimal("0.00")),
    ]
    # no receipt account: the receipt rule's
    assert lines_of("CB-1002", "opened") == [
        ("1100-00", Decimal("0.00"), Decimal("25.00")),
        ("1200-00", Decimal("25.00"), Decimal("0.00")),
    ]
    assert lines_of("CB-1002", "lost") == [
        ("1200-00", Decimal("0.00"), Decimal("25.00")),
        ("6100-00", Decimal("25.00"), Decimal("0.00")),
    ]
    assert lines_of("CB-1003", "won") == [
        ("1100-00", Decimal("60.00"), Decimal("0.00")),
        ("1200-00", Decimal("0.00"), Decimal("60.00")),
    ]
    won_batch = by_number[
        ChargebackEvent.objects.get(
            chargeback__case_number="CB-1003", state="won"
        ).posting.document_number.strip()
    ]
    assert won_batch.gldate == date(2026, 11, 19)


def test_an_opened_case_waits_in_review_until_it_is_won_or_lost(world, run_tasks):
    with time_machine.travel(NOW, tick=False):
        chargebacks.import_report(world, "report.csv", FIXTURE.read_bytes())
        run_tasks()

    opened = ReviewItem.objects.get(
        transaction__transaction_id="9000001", kind=ReviewItem.Kind.CHARGEBACK
    )
    assert opened.state == ReviewItem.State.OPEN
    assert "respond by 2026-11-20" in opened.reason
    decided = ReviewItem.objects.filter(
        transaction__transaction_id__in=["9000002", "9000003"],
        kind=ReviewItem.Kind.CHARGEBACK,
    )
    assert {i.state for i in decided} == {ReviewItem.State.RESOLVED}


def test_importing_the_same_file_again_changes_nothing(world, run_tasks):
    content = FIXTURE.read_bytes()
    with time_machine.travel(NOW, tick=False):
        first = chargebacks.import_report(world, "report.csv", content)
        run_tasks()
        again = chargebacks.import_report(world, "report-copy.csv", content)
        run_tasks()

    assert again.pk == first.pk
    assert Chargeback.objects.count() == 4
    assert ChargebackEvent.objects.count() == 6
    assert Posting.objects.filter(kind=Posting.Kind.GL_BATCH).count() == 6
    assert GlBatch.objects.count() == 6


def test_a_later_report_moves_cases_on_and_leaves_known_states_alone(world, run_tasks):
    header = (
        "Case ID,Transaction ID,Dispute Amount,Status,Received Date,Resolved Date\n"
    )
    with time_machine.travel(NOW, tick=False):
        chargebacks.import_report(world, "report.csv", FIXTURE.read_bytes())
        later = chargebacks.import_report(
            world,
            "later.csv",
            (
                header + "CB-1001,9000001,40.00,Won,11/02/2026,11/24/2026\n"
                "CB-1002,9000002,25.00,Lost,11/03/2026,11/18/2026\n"
                "CB-1003,9000003,60.00,Lost,11/04/2026,11/24/2026\n"
            ).encode(),
        )
        run_tasks()

    assert (later.changed_count, later.unchanged_count, later.bad_count) == (1, 1, 1)
    assert Chargeback.objects.get(case_number="CB-1001").state == "won"
    [error] = [r["errors"] for r in later.results if r["errors"]]
    assert "case CB-1003 is already won" in error[0]
    assert GlBatch.objects.count() == 7
    assert_balanced_and_open(GlBatch.objects.all())


def test_card_numbers_never_reach_the_database(world, run_tasks):
    with time_machine.travel(NOW, tick=False):
        record = chargebacks.import_report(world, "report.csv", FIXTURE.read_bytes())
    reason = Chargeback.objects.get(case_number="CB-1009").reason_text
    assert reason.startswith("=HYPERLINK(")  # formula text kept as text
    assert "4111 1111 1111 1111" not in reason
    assert "4111 1111 1111 1111" not in str(record.rows)


def test_a_batch_in_a_closed_period_goes_to_review_and_sends_nothing(world, run_tasks):
    sale = world.transactions.get(transaction_id="9000004")
    with time_machine.travel(NOW, tick=False):
        chargebacks.open_chargeback(
            sale,
            case_number="OLD-1",
            amount=Decimal("10.00"),
            opened_on=date(2026, 7, 10),
        )
        run_tasks()

    posting = Posting.objects.get(kind=Posting.Kind.GL_BATCH)
    assert posting.state == Posting.State.NEEDS_REVIEW
    item = ReviewItem.objects.get(transaction=sale, kind=ReviewItem.Kind.CHARGEBACK)
    assert "does not accept a GL batch dated 2026-07-10" in item.reason
    assert "respond to it" in item.reason
    assert not GlBatch.objects.exists()


def test_no_account_for_a_chargeback_names_the_fix(world, run_tasks):
    GlRule.objects.filter(purpose=Purpose.CHARGEBACK).delete()
    sale = world.transactions.get(transaction_id="9000004")
    with time_machine.travel(NOW, tick=False):
        plan = chargebacks.preview_open(
            sale, case_number="X-1", amount=Decimal("5.00"), opened_on=NOW.date()
        )
    assert not plan.is_balanced or plan.problems
    assert "add a GL rule with purpose “chargeback”" in plan.problems[0]


def test_the_form_path_refuses_what_cannot_be_a_chargeback(world):
    sale = world.transactions.get(transaction_id="9000004")
    with pytest.raises(chargebacks.ChargebackError, match="more than the payment's"):
        chargebacks.preview_open(
            sale, case_number="X", amount=Decimal("100.01"), opened_on=NOW.date()
        )
    with time_machine.travel(NOW, tick=False):
        chargebacks.open_chargeback(
            sale, case_number="X", amount=Decimal("5.00"), opened_on=NOW.date()
        )
    with pytest.raises(chargebacks.ChargebackError, match="already recorded"):
        chargebacks.preview_open(
            sale, case_number="X", amount=Decimal("5.00"), opened_on=NOW.date()
        )
    chargeback = Chargeback.objects.get(case_number="X")
    with pytest.raises(chargebacks.ChargebackError, match="before the case opened"):
        chargebacks.preview_resolve(chargeback, "won", date(2026, 1, 1))


@pytest.fixture
def admin_client_(client, django_user_model):
    user = django_user_model.objects.create_superuser("boss", "b@example.com", "pw")
    client.force_login(user)
    return client


def test_the_admin_form_previews_the_batch_and_records_only_on_confirmation(
    world, admin_client_, run_tasks
):
    values = {
        "connection": world.pk,
        "transaction_id": "9000004",
        "case_number": "F-1",
        "amount": "30.00",
        "fee": "",
        "reason_code": "10.4",
        "reason_text": "Fraud",
        "opened_on": "2026-11-20",
        "due_on": "2026-12-01",
    }
    url = "/admin/integrations/chargeback/new/"
    with time_machine.travel(NOW, tick=False):
        assert admin_client_.get(url).status_code == 200
        preview = admin_client_.post(url, values)
        assert preview.status_code == 200
        page = preview.content.decode()
        assert "1200-00" in page and "1100-00" in page and "balanced" in page
        assert not Chargeback.objects.exists()
        fingerprint = preview.context["plan"].fingerprint
        stale = admin_client_.post(url, {**values, "confirm": "0" * 20})
        assert "changed since the preview" in stale.content.decode()
        assert not Chargeback.objects.exists()
        done = admin_client_.post(url, {**values, "confirm": fingerprint})
        assert done.status_code == 302
        run_tasks()
        chargeback = Chargeback.objects.get(case_number="F-1")
        resolve = f"/admin/integrations/chargeback/{chargeback.pk}/resolve/"
        decide = {"state": "lost", "on": "2026-11-24"}
        preview = admin_client_.post(resolve, decide)
        assert "6100-00" in preview.content.decode()
        fingerprint = preview.context["plan"].fingerprint
        admin_client_.post(resolve, {**decide, "confirm": fingerprint})
        run_tasks()
        page = admin_client_.get(
            f"/admin/integrations/chargeback/{chargeback.pk}/change/"
        )
    assert page.status_code == 200
    chargeback.refresh_from_db()
    assert chargeback.state == "lost"
    assert GlBatch.objects.count() == 2
    assert_balanced_and_open(GlBatch.objects.all())


def test_a_bad_amount_in_the_form_is_a_clear_error_not_a_crash(world, admin_client_):
    url = "/admin/integrations/chargeback/new/"
    response = admin_client_.post(
        url,
        {
            "connection": world.pk,
            "transaction_id": "nope",
            "case_number": "F-2",
            "amount": "1e400",
            "opened_on": "2026-13-45",
        },
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "No payment nope" in page
    assert "Enter a valid date" in page


def test_the_upload_lists_bad_rows_and_imports_only_when_they_are_acknowledged(
    world, admin_client_, run_tasks
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("disputes.csv", FIXTURE.read_bytes(), "text/csv")
    with time_machine.travel(NOW, tick=False):
        response = admin_client_.post(
            "/admin/integrations/disputeimport/upload/",
            {"connection": world.pk, "report": upload, "save_mapping": "on"},
        )
        assert response.status_code == 302
        record = DisputeImport.objects.get()
        page = admin_client_.get(response["Location"]).content.decode()
        assert "Line 5: unknown transaction id 9999999" in page
        assert "Line 10: case CB-1001 is already on line 2 of this file" in page
        confirm = f"/admin/integrations/disputeimport/{record.pk}/confirm/"
        admin_client_.post(confirm)
        assert not Chargeback.objects.exists()  # bad rows not acknowledged
        admin_client_.post(confirm, {"skip_bad": "1"})
        run_tasks()
    assert Chargeback.objects.count() == 4
    assert chargebacks.saved_mapping(world).date_format == "%m/%d/%Y"


def test_a_huge_or_binary_upload_is_refused_with_the_reason(world, admin_client_):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from mappings import disputes

    huge = SimpleUploadedFile("big.csv", b"a" * (disputes.MAX_BYTES + 1))
    response = admin_client_.post(
        "/admin/integrations/disputeimport/upload/",
        {"connection": world.pk, "report": huge},
    )
    assert "may be at most 2,000,000 bytes" in response.content.decode()
    binary = SimpleUploadedFile("x.csv", b"\x00\x01PK\x03\x04")
    response = admin_client_.post(
        "/admin/integrations/disputeimport/upload/",
        {"connection": world.pk, "report": binary},
        follow=True,
    )
    assert response.status_code == 200
    assert "not a CSV text file" in response.content.decode()
    assert not Chargeback.objects.exists()


def test_the_demo_report_imports_three_cases_and_names_two_bad_rows(
    http, paytrace_conn, sage, run_tasks
):
    from integrations.reconciliation import business_today

    for purpose, account in ((Purpose.CHARGEBACK, "1200-00"), ("receipt", "1100-00")):
        GlRule.objects.create(
            connection=paytrace_conn, name=purpose, account=account, purpose=purpose
        )
    sales = [
        (make_transaction(paytrace_conn, amount=Decimal("80.00")).transaction_id, a)
        for a in (Decimal("80.00"), Decimal("60.00"), Decimal("40.00"))
    ]
    paytrace_conn.suspense_account = "9999-00"  # no loss or fee rule: suspense
    paytrace_conn.save()
    content = chargebacks.sample_report(sales, business_today())

    record = chargebacks.import_report(paytrace_conn, "demo.csv", content)
    run_tasks()

    assert (record.created_count, record.bad_count) == (3, 2)
    assert sorted(Chargeback.objects.values_list("state", flat=True)) == [
        "lost",
        "opened",
        "won",
    ]
    assert GlBatch.objects.count() == 5
    assert_balanced_and_open(GlBatch.objects.all())
    accounts = {
        line.glacnt.strip() for b in GlBatch.objects.all() for line in b.lines.all()
    }
    assert "9999-00" in accounts
