"""`Authorization: Token <key>` against hashed keys (see `portal.models.ApiToken`)."""

from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from portal.models import ApiToken

# Recording every use would add a write to every API read; once a minute is enough to
# tell a live token from a forgotten one.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class HashedTokenAuthentication(TokenAuthentication):
    """DRF's token scheme and header, looked up by digest instead of by stored key."""

    model = ApiToken

    def authenticate_credentials(self, key: str) -> tuple[AbstractBaseUser, ApiToken]:
        token = ApiToken.objects.find(key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        now = timezone.now()
        if (
            token.last_used_at is None
            or now - token.last_used_at > LAST_USED_RESOLUTION
        ):
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token
