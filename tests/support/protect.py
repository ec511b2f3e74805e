"""What a browser gets from PayTrace's hosted fields, without a browser.

`hosted_fields_token(connection, client)` does what the enrolment page and the
Protect.js stand-in do together: the portal asks PayTrace for a `clientKey`
(`payment_fields/token/create`, through the connector, so it works under the `http`
fixture), then the "iframe" posts the card to the sandbox's tokenize endpoint with that
key and gets back the `hpf_token`/`enc_key` pair a page would hand to the portal. The
card number goes only to the sandbox's hosted-fields endpoint, never to the portal.
"""

from typing import Any

TOKENIZE_PATH = "/sandbox/paytrace/protect/tokenize"


def hosted_fields_token(
    connection: Any,
    client: Any,
    number: str = "4111111111111111",
    month: int = 12,
    year: int = 2030,
    csc: str = "123",
) -> tuple[str, str]:
    """Return `(hpf_token, enc_key)` for a card, as the hosted fields would.

    `connection` is the PayTrace `Connection` (pointing at the sandbox); `client` is a
    Django test client. Fails the test (AssertionError naming the sandbox's errors)
    when the sandbox refuses the card.
    """
    client_key = connection.paytrace().payment_fields_client_key()
    response = client.post(
        TOKENIZE_PATH,
        data={
            "clientKey": client_key,
            "number": number,
            "expiration_month": str(month),
            "expiration_year": str(year),
            "csc": csc,
        },
        content_type="application/json",
    )
    assert response.status_code == 200, (
        f"the hosted fields refused the card: {response.status_code} "
        f"{response.content.decode(errors='replace')}"
    )
    reply = response.json()
    return reply["hpf_token"], reply["enc_key"]
