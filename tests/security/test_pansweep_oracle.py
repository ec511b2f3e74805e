"""The sweep's oracle finds a card number in every disguise the fuzzer plants."""

import pytest
from django.db import connection

from tests.support.attack import PAN_FORMS, disguise, render
from tests.support.pansweep import digits_of, is_luhn_valid, new_pan, sweep_database

pytestmark = [pytest.mark.fuzz]


def test_planted_numbers_are_fresh_and_luhn_valid():
    pans = {new_pan() for _ in range(200)}
    assert len(pans) == 200
    assert all(is_luhn_valid(p) and len(p) in (15, 16) for p in pans)


@pytest.mark.parametrize("form", PAN_FORMS)
def test_every_disguise_is_read_back_as_the_card_digits(form):
    pan = new_pan()
    assert pan in digits_of(render({"field": disguise(pan, form)}))
    assert pan in digits_of(render({"field": disguise(pan, form)}, ascii_only=False))


@pytest.mark.django_db
def test_the_sweep_names_the_table_and_column_holding_a_planted_number():
    pan, other = new_pan(), new_pan()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE oracle_probe (id INTEGER, note TEXT)")
        cursor.execute(
            "INSERT INTO oracle_probe VALUES (1, %s)",
            [render({"groups": disguise(pan, "group_array")})],
        )
    found = sweep_database([pan, other])
    assert [(f.pan, f.where) for f in found] == [(pan, "oracle_probe.note")]
