"""The same scripted sequence of calls against the sandbox and the agent, the answers
compared field by field.

What legitimately differs is removed first: `created_at` (each side's clock) and the
change feeds' `next_cursor` (opaque, each side's own journal). Rows a feed returns for
one commit may come in any order, so feed pages are compared sorted by key. Receipt
numbers are compared: both sides start from the same counter.
"""

from __future__ import annotations

from typing import Any

from tests.conformance.targets import Target

FEED_PATHS = ("/invoices", "/customers")


def script(t: Target) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, call kwargs) in order; `t` gives the business dates."""
    today = t.period_date(0).isoformat()

    def receipt(**fields: Any) -> dict[str, Any]:
        body = {
            "custno": "ACME",
            "date": today,
            "amount": "100.00",
            "method": "visa",
            "reference": "D-1",
            "applications": [],
        }
        body.update(fields)
        return body

    first = receipt(
        amount="5000.00",
        applications=[
            {"invno": "10012", "amount": "10.00"},
            {"invno": " 10001", "amount": "4000.00"},
        ],
        gl_account="110000",
    )

    def post(key: str | None, body: Any) -> tuple[str, str, dict[str, Any]]:
        headers = {} if key is None else {"Idempotency-Key": key}
        return ("POST", "/cash-receipts", {"json": body, "headers": headers})

    def get(path: str, **params: str) -> tuple[str, str, dict[str, Any]]:
        return ("GET", path, {"params": params or None})

    return [
        get("/customers/ACME"),
        get("/customers/acme/open-items"),
        get("/customers/HOLDCO"),
        get("/invoices", custno="IRONWD", status="open"),
        get("/invoices", status="closed"),
        get("/invoices/10057"),
        get("/invoices/10059"),
        get("/invoices/a/b"),
        get("/gl-accounts"),
        get("/gl-accounts/110000"),
        get("/gl-accounts/6900-00"),
        get("/gl-accounts/1050-00"),
        get("/periods"),
        get("/invoices", changed_since=""),
        get("/customers"),
        post("k1", first),
        post("k1", first),
        post("k1", {**first, "amount": "5000.01"}),
        post("k2", receipt(reference="D-1", amount="1.00")),
        post("k3", receipt(reference="D-3", date=t.period_date(-2).isoformat())),
        post("k3", receipt(reference="D-3", date=t.period_date(-3).isoformat())),
        post("k3", receipt(reference="D-3", date=t.period_date(1).isoformat())),
        post("k3", receipt(reference="D-3", date=t.period_date(7).isoformat())),
        post(
            "k4",
            receipt(
                reference="D-4", applications=[{"invno": "10023", "amount": "100.01"}]
            ),
        ),
        post(
            "k5",
            receipt(
                custno="IRONWD",
                reference="D-5",
                applications=[{"invno": "10058", "amount": "1.00"}],
            ),
        ),
        post(
            "k5",
            receipt(
                reference="D-5", applications=[{"invno": "10002", "amount": "1.00"}]
            ),
        ),
        post("k6", receipt(reference="D-6", gl_account="6900-00")),
        post("k6", receipt(reference="D-6", gl_account="7777-00")),
        post("k7", {"custno": "TOOLONG", "amount": 12.5, "applications": [{}]}),
        post(None, receipt(reference="D-8")),
        post("k9", receipt(custno="NOSUCH", reference="D-9")),
        (
            "POST",
            "/cash-receipts/batch",
            {
                "json": {
                    "receipts": [
                        {
                            "idempotency_key": "b1",
                            "receipt": receipt(
                                custno="BLUEOX",
                                reference="D-B1",
                                amount="60.00",
                                applications=[{"invno": "10002", "amount": "60.00"}],
                            ),
                        },
                        {
                            "idempotency_key": "b1",
                            "receipt": receipt(
                                custno="BLUEOX",
                                reference="D-B1",
                                amount="60.00",
                                applications=[{"invno": "10002", "amount": "60.00"}],
                            ),
                        },
                        {"idempotency_key": "b2", "receipt": receipt(amount="1.001")},
                        "not an object",
                        {"receipt": receipt(reference="D-B3")},
                        {
                            "idempotency_key": "b4",
                            "receipt": receipt(custno="IRONWD", reference="D-B4"),
                        },
                        {
                            "idempotency_key": "b5",
                            "receipt": receipt(reference="D-1", amount="2.00"),
                        },
                    ]
                }
            },
        ),
        ("POST", "/cash-receipts/batch", {"json": {"receipts": []}}),
        get("/cash-receipts"),
        get("/cash-receipts", custno="acme"),
        get("/cash-receipts", reference="D-B4"),
        get("/cash-receipts", idempotency_key="b1"),
        get("/cash-receipts/000001"),
        get("/cash-receipts/%20%20000002"),
        get("/cash-receipts/000009"),
        get("/cash-receipts", date_from=today, date_to=today, limit="2"),
        get(
            "/cash-receipts", date_from=today, date_to=today, limit="2", cursor="000002"
        ),
        get("/cash-receipts", date_from=today, date_to="2000-01-01"),
        get("/invoices/10001"),
        get("/invoices/10012"),
        get("/invoices/10002"),
        get("/customers/ACME"),
        get("/customers/BLUEOX"),
        get("/customers/IRONWD"),
        get("/invoices", custno="ACME"),
        get("/invoices", changed_since="", limit="1000"),
        get("/customers", changed_since="0", limit="1000"),
        get("/invoices", changed_since="bogus"),
        get("/customers", changed_since="", limit="0"),
        ("DELETE", "/invoices/10001", {}),
        ("GET", "/customers/ACME", {"auth": False}),
        ("GET", "/periods", {"headers": {"Sage-Company": "02"}}),
    ]


def normalise(path: str, body: Any) -> Any:
    """Drop what legitimately differs between implementations."""
    if isinstance(body, list):
        return [normalise(path, item) for item in body]
    if not isinstance(body, dict):
        return body
    out = {k: normalise(path, v) for k, v in body.items() if k != "created_at"}
    if path in FEED_PATHS and "has_more" in out:
        out.pop("next_cursor", None)
        key = "invno" if path == "/invoices" else "custno"
        out["results"] = sorted(out["results"], key=lambda row: row[key])
    return out


def run(target: Target) -> list[dict[str, Any]]:
    answers = []
    for method, path, kwargs in script(target):
        if kwargs.get("auth") is False and not target.bearer_auth:
            answers.append({"call": f"{method} {path}", "skipped": "no bearer key"})
            continue
        answer = target.call(method, path, **kwargs)
        answers.append(
            {
                "call": f"{method} {path} {kwargs.get('params') or ''}".strip(),
                "status": answer.status,
                "www_authenticate": "WWW-Authenticate" in answer.headers,
                "body": normalise(path, answer.json),
            }
        )
    return answers


def compare(sandbox: list[dict[str, Any]], other: list[dict[str, Any]]) -> None:
    assert len(sandbox) == len(other) >= 30
    differences = [
        (i, s["call"], s, o)
        for i, (s, o) in enumerate(zip(sandbox, other, strict=True))
        if s != o and "skipped" not in o
    ]
    assert not differences, "\n\n".join(
        f"#{i} {call}\n  sandbox: {s}\n  other:   {o}" for i, call, s, o in differences
    )
    # The script is not vacuous: receipts were written, refusals were met.
    statuses = {a["status"] for a in sandbox}
    assert {200, 201, 400, 401, 404, 405, 409, 422} <= statuses


def test_the_sandbox_and_the_agent_answer_the_same_script_alike(
    sandbox_target, agent_target
):
    compare(run(sandbox_target), run(agent_target))


def test_the_sandbox_and_the_agent_through_the_relay_answer_alike(
    sandbox_target, relay_target
):
    compare(run(sandbox_target), run(relay_target))
