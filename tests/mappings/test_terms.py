"""Due dates from Sage Pro terms text (mappings.terms): pure, no database."""

from datetime import date

import pytest

from mappings.terms import due_date

INVOICED = date(2026, 11, 10)


@pytest.mark.parametrize(
    ("terms", "due"),
    [
        ("Net 30", date(2026, 12, 10)),
        ("NET 30", date(2026, 12, 10)),
        ("net30", date(2026, 12, 10)),
        ("N30", date(2026, 12, 10)),
        ("N/45", date(2026, 12, 25)),
        ("30 days", date(2026, 12, 10)),
        ("15", date(2026, 11, 25)),
        ("2% 10 Net 30", date(2026, 12, 10)),
        ("2/10 Net 30", date(2026, 12, 10)),
        ("2/10 N30", date(2026, 12, 10)),
        ("1% 15, Net 45", date(2026, 12, 25)),
        ("2/10 30", date(2026, 12, 10)),
        ("Due on receipt", INVOICED),
        ("Due upon receipt", INVOICED),
        ("Receipt", INVOICED),
        ("COD", INVOICED),
        ("C.O.D.", INVOICED),
        ("Cash in advance", INVOICED),
        ("Immediate", INVOICED),
        ("Net 0", INVOICED),
        ("Net EOM", date(2026, 11, 30)),
        ("EOM", date(2026, 11, 30)),
        ("Net 30 EOM", date(2026, 12, 30)),
        ("EOM 15", date(2026, 12, 15)),
        ("10th Prox", date(2026, 12, 10)),
        ("Net 10th", date(2026, 12, 10)),
        ("  net   30  ", date(2026, 12, 10)),
    ],
)
def test_it_reads_common_terms(terms, due):
    found = due_date(INVOICED, terms, 21)
    assert found.on == due
    assert found.understood, found.rule


@pytest.mark.parametrize(
    "terms", ["", "   ", "See contract", "Net 3000", "2/10", "10th", "Net -5", "💳"]
)
def test_it_falls_back_to_the_default_net_days(terms):
    found = due_date(INVOICED, terms, 21)
    assert found.on == date(2026, 12, 1)
    assert not found.understood
    assert "21 net days" in found.rule


def test_prox_in_december_rolls_into_january_and_short_months_clamp():
    assert due_date(date(2026, 12, 5), "31st prox", 30).on == date(2027, 1, 31)
    assert due_date(date(2027, 1, 5), "31st prox", 30).on == date(2027, 2, 28)


def test_eom_in_a_leap_february():
    assert due_date(date(2028, 2, 3), "EOM", 30).on == date(2028, 2, 29)


def test_a_nonsense_default_is_kept_in_range():
    assert due_date(INVOICED, "", -5).on == INVOICED
    assert due_date(INVOICED, "", 10_000).on == date(2027, 11, 10)
