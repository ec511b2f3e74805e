"""`Authorization: Token <key>` against hashed keys (see `portal.models.ApiToken`), and
the check that a token holds the scope an API needs (`HasScope`)."""

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from rest_framework import exceptions, permissions
from rest_framework.authentication import TokenAuthentication

from portal.models import ApiToken

if TYPE_CHECKING:
    # Not at run time: DRF imports this module while `rest_framework.views` loads.
    from rest_framework.request import Request
    from rest_framework.views import APIView

# Recording every use would add a write to every API read; once a minute is enough to
# tell a live token from a forgotten one.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class HashedTokenAuthentication(TokenAuthentication):
    """DRF's token scheme and header, looked up by digest instead of by stored key.

    An unknown key gets DRF's bare "Invalid token."; a known key that no longer works
    gets a 401 saying why (expired, revoked, rotated), which tells its holder nothing
    they did not have already.
    """

    model = ApiToken

    def authenticate_credentials(self, key: str) -> tuple[AbstractBaseUser, ApiToken]:
        token = ApiToken.objects.find(key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        now = timezone.now()
        refusal = token.refusal(now)
        if refusal:
            raise exceptions.AuthenticationFailed(refusal)
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        if (
            token.last_used_at is None
            or now - token.last_used_at > LAST_USED_RESOLUTION
        ):
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token


class HasScope(permissions.BasePermission):
    """A token caller's token holds one of the view's `required_scopes`.

    Put it first in a view's `permission_classes`, before the permission check, so a
    token without the scope hears about the scope. A session caller passes: scopes
    limit keys, and the next check applies the signed-in user's permissions. A view
    that names no scope refuses every token.
    """

    def has_permission(self, request: "Request", view: "APIView") -> bool:
        token = request.auth
        if not isinstance(token, ApiToken):
            return True
        needed: Sequence[str] = getattr(view, "required_scopes", ())
        if any(token.allows(scope) for scope in needed):
            return True
        raise exceptions.PermissionDenied(missing_scope_message(needed))


def missing_scope_message(needed: Sequence[str]) -> str:
    if not needed:
        return "This API does not accept API tokens; sign in instead."
    if len(needed) == 1:
        wanted = f"the scope {needed[0]}"
    else:
        wanted = "one of the scopes " + ", ".join(needed)
    return (
        f"This token lacks {wanted}, which this API needs. Make a token with it "
        "(Admin › API tokens) and use that key."
    )
