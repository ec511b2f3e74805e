"""Secrets at rest: a text field encrypted with Fernet (AES-128-CBC + HMAC).

`FIELD_ENCRYPTION_KEYS` lists Fernet keys; the first encrypts and all of them decrypt,
so a key is rotated by putting a new one first and re-saving the rows.
"""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "fernet:"


@cache
def get_fernet() -> MultiFernet:
    # Settings always fill this: from the environment, or in development and demo mode
    # from var/field-encryption.key (see portal.keyfile).
    keys = list(settings.FIELD_ENCRYPTION_KEYS)
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS holds a value that is not a Fernet key "
            "(32 url-safe base64-encoded bytes)."
        ) from exc


def encrypt(value: str) -> str:
    return PREFIX + get_fernet().encrypt(value.encode()).decode()


def decrypt(value: str) -> str:
    if not value.startswith(PREFIX):
        raise ValueError("value is not an encrypted secret")
    try:
        return get_fernet().decrypt(value[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with FIELD_ENCRYPTION_KEYS: "
            "the key that encrypted it is missing from the list."
        ) from exc


class EncryptedTextField(models.TextField):
    """A TextField whose database value is Fernet ciphertext.

    Python code sees plain text; the column only ever holds `fernet:<token>`.
    """

    def from_db_value(
        self, value: str | None, expression: object, connection: object
    ) -> str | None:
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value: object) -> str | None:
        prepared = super().get_prep_value(value)
        if prepared is None or prepared == "":
            return prepared
        return encrypt(str(prepared))
