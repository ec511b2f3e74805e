"""Every card-number disguise the fuzzers plant, committed, then searched for everywhere.

Unlike the rolled-back fuzz examples, these requests are committed as in production, so
the SQLite file and its WAL are searched as bytes too (a value masked after it was
written leaves its first version there).
"""

import json
from datetime import UTC, datetime

import pytest

from tests.support.attack import PAN_FORMS, Attack, disguise, render, sign_bytes
from tests.support.campaign import Campaign
from tests.support.pansweep import new_pan
from tests.webhooks import paytrace_record

pytestmark = [pytest.mark.fuzz]

SLUG = "paytrace-sandbox"


def _event(record: dict, extra: dict | None = None) -> dict:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "type": "transaction.approved",
        "occurred_at": now,
        "data": record,
        **(extra or {}),
    }


def _signed(
    label: str,
    body: dict,
    secret: str,
    pans: list[str],
    msg_id: str | None = None,
    **headers: str,
) -> Attack:
    data = render(body).encode()
    signed = sign_bytes(
        data, secret, msg_id or f"msg_{new_pan()[::-1]}x", datetime.now(UTC)
    )
    return Attack(
        label,
        "POST",
        f"/webhooks/paytrace/{SLUG}/",
        data,
        "application/json",
        {**signed, **headers},
        pans,
        [label],
    )


def battery(secret: str) -> list[Attack]:
    out = []
    for form in PAN_FORMS:
        for field in (
            "description",
            "customer_reference_id",
            "invoice_id",
            "billing_address.name",
        ):
            pan = new_pan()
            record = paytrace_record()
            if "." in field:
                outer, inner = field.split(".")
                record[outer][inner] = disguise(pan, form)
            else:
                record[field] = disguise(pan, form)
            out.append(_signed(f"{form}@{field}", _event(record), secret, [pan]))
        pan = new_pan()
        out.append(
            _signed(
                f"{form}@unknown-field",
                _event(paytrace_record(), {"note": disguise(pan, form)}),
                secret,
                [pan],
            )
        )
    pan = new_pan()
    out.append(
        _signed(
            "plain@object-key", _event(paytrace_record(notes={pan: "x"})), secret, [pan]
        )
    )
    pan = new_pan()
    out.append(
        _signed(
            "luhn-valid transaction_id",
            _event(paytrace_record(transaction_id=int(pan))),
            secret,
            [pan],
        )
    )
    pan = new_pan()
    out.append(
        _signed(
            "plain@webhook-id", _event(paytrace_record()), secret, [pan], msg_id=pan
        )
    )
    pan = new_pan()
    out.append(
        _signed(
            "plain@header-name",
            _event(paytrace_record()),
            secret,
            [pan],
            **{f"X-Card-{pan}": "1"},
        )
    )
    pan = new_pan()
    body = json.dumps({"type": "transaction.approved"}).encode()
    out.append(
        Attack(
            "plain@url-slug",
            "POST",
            f"/webhooks/paytrace/{pan}/",
            body,
            "application/json",
            {},
            [pan],
            ["url-slug"],
        )
    )
    for tid_form in ("plain", "fullwidth", "superscript_tail"):
        pan = new_pan()
        tid = disguise(pan, tid_form)
        parm = f"TRANSACTIONID~{tid}|APPMSG~ok|"
        from urllib.parse import urlencode

        out.append(
            Attack(
                f"{tid_form}@silent-post TRANSACTIONID",
                "POST",
                f"/webhooks/paytrace/{SLUG}/silent-post/",
                urlencode({"parmList": parm}).encode(),
                "application/x-www-form-urlencoded",
                {},
                [pan],
                [tid_form],
            )
        )
    return out


@pytest.mark.django_db(transaction=True)
def test_no_planted_card_number_survives_in_any_table_file_log_or_task(
    paytrace_conn, sage, http, superuser_client, secret
):
    with Campaign(admin=superuser_client, max_failures_per_kind=500) as campaign:
        for attack in battery(secret):
            campaign.send(attack)
        campaign.drain()
        campaign.check_pages()
        campaign.sweep(files=True)
    findings = [f for f in campaign.failures if f.kind == "card_number"]
    places: dict[str, set[str]] = {}
    for f in findings:
        where = f.detail.split(" in ", 1)[-1].split(":", 1)[0]
        places.setdefault(where, set()).add(f.attack.label if f.attack else "?")
    summary = "\n".join(
        f"{where}: {sorted(labels)}" for where, labels in sorted(places.items())
    )
    assert not findings, f"card numbers found ({len(findings)}):\n{summary}"
