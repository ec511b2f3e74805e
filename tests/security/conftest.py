import pytest


@pytest.fixture
def superuser(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser(
        "fuzz-admin", "fuzz@example.com", "fuzz-admin-password"
    )


@pytest.fixture
def superuser_client(superuser):
    """A logged-in superuser whose server errors come back as 500 answers."""
    from django.test import Client

    client = Client(raise_request_exception=False)
    client.force_login(superuser)
    return client
