"""Hostile input to the pages issue 16 added: the sign-in form (with the lockout on),
the two-factor code pages, a superuser's reset page and the API-token form. Whatever
is typed or posted, the answer is a page or a refusal, never a server error, and a
card number typed into a token's name is not stored."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from hypothesis import given
from hypothesis import strategies as st

from portal.models import ApiToken, AuthenticatorDevice
from tests.support.attack import LONE_SURROGATES
from tests.support.profiles import fuzz_settings

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db]

PAN = "4111111111111111"
# Text a person or a script might post: any unicode (lone surrogates included), very
# long values, NUL bytes, markup, numbers in other scripts, a card number.
HOSTILE_TEXT = st.one_of(
    st.text(max_size=64),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "0" * 10_000,
            "１２３４５６",
            "٠١٢٣٤٥",
            "123 456",
            "12345678901234567890",
            "<script>alert(1)</script>",
            "'; DROP TABLE auth_user; --",
            PAN,
            "4111 1111 1111 1111",
            *LONE_SURROGATES,
        ]
    ),
)
# Form values as a browser or a script could send them: one value, several, or none.
FIELD = st.one_of(HOSTILE_TEXT, st.lists(HOSTILE_TEXT, max_size=3))


def answered(response) -> int:
    assert response.status_code < 500, response.content[:300]
    return response.status_code


def staff(username: str, **fields):
    return get_user_model().objects.get_or_create(
        username=username, defaults={"is_staff": True, **fields}
    )[0]


@given(username=FIELD, password=FIELD)
@fuzz_settings()
def test_the_sign_in_form_with_the_lockout_on(username, password):
    with override_settings(AXES_ENABLED=True):
        page = Client(raise_request_exception=False).post(
            "/admin/login/?next=/admin/",
            {"username": username, "password": password},
        )
    assert answered(page) in (200, 403, 429)


@given(page=st.sampled_from(["verify", "setup"]), code=FIELD, next_=FIELD)
@fuzz_settings()
def test_the_two_factor_code_pages(page, code, next_):
    user = staff("fuzz-2fa", is_superuser=True)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    if page == "verify" and not AuthenticatorDevice.objects.filter(user=user).exists():
        AuthenticatorDevice.objects.create(user=user, name="app", confirmed=True)
    with override_settings(TWO_FACTOR_REQUIRED=True):
        answered(client.get(f"/admin/two-factor/{page}/"))
        answered(
            client.post(f"/admin/two-factor/{page}/", {"code": code, "next": next_})
        )


@given(username=FIELD)
@fuzz_settings()
def test_a_superusers_reset_page(username):
    client = Client(raise_request_exception=False)
    client.force_login(staff("fuzz-root", is_superuser=True))

    answered(client.post("/admin/two-factor/reset/", {"username": username}))


@given(name=FIELD, scopes=FIELD, lifetime=FIELD, user=FIELD)
@fuzz_settings()
def test_the_api_token_form(name, scopes, lifetime, user):
    client = Client(raise_request_exception=False)
    client.force_login(staff("fuzz-tokens", is_superuser=True))

    answered(
        client.post(
            "/admin/portal/apitoken/add/",
            {
                "name": name,
                "scopes": scopes,
                "lifetime_days": lifetime,
                "user": user,
            },
        )
    )

    assert not ApiToken.objects.filter(name__contains=PAN).exists()
    assert not ApiToken.objects.filter(name__contains="4111 1111").exists()


def test_a_card_number_typed_as_a_tokens_name_is_not_stored():
    client = Client(raise_request_exception=False)
    client.force_login(staff("pan-typist", is_superuser=True))

    page = client.post(
        "/admin/portal/apitoken/add/",
        {
            "name": f"card {PAN}",
            "scopes": ["payments:read"],
            "lifetime_days": "30",
            "user": get_user_model().objects.get(username="pan-typist").pk,
        },
    )

    answered(page)
    assert PAN not in page.content.decode()
    assert not ApiToken.objects.filter(name__contains=PAN).exists()


@override_settings(AXES_ENABLED=True)
def test_a_card_number_typed_as_a_user_name_is_kept_nowhere():
    from axes.models import AccessAttempt

    from portal.models import AccessAuditEntry

    client = Client(raise_request_exception=False)
    for _ in range(6):  # past the lockout
        answered(
            client.post("/admin/login/", {"username": f"x {PAN}", "password": "guess"})
        )

    stored = [
        *AccessAuditEntry.objects.values_list("username", "detail"),
        *AccessAttempt.objects.values_list("username", "post_data", "get_data"),
    ]
    assert stored, "the failed sign-ins were recorded"
    assert not any(PAN in str(value) for row in stored for value in row)
    assert any("1111" in str(value) for row in stored for value in row)
