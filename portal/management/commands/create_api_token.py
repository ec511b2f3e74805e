from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal import tokens
from portal.models import ApiToken


class Command(BaseCommand):
    help = (
        "Make an API token for a user and print its key once (only a hash is stored). "
        "Clients send it as `Authorization: Token <key>`. docs/api-tokens.md lists the "
        "scopes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What the token is for.")
        parser.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            choices=tokens.Scope.values,
            help="A scope the token gets (repeat for several). Default: every scope "
            "the user's permissions give something to do.",
        )
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="How many days the key works (default API_TOKEN_LIFETIME_DAYS, at "
            "most API_TOKEN_MAX_LIFETIME_DAYS).",
        )

    def handle(
        self,
        *args: Any,
        username: str,
        name: str,
        scopes: list[str] | None,
        days: int | None,
        **options: Any,
    ) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(
                f"No user {username!r}; create it first (manage.py createsuperuser, "
                "or in the admin)."
            )
        chosen = sorted(set(scopes)) if scopes else tokens.scopes_for(user)
        problem = tokens.unusable_scope_problem(user, chosen)
        if problem:
            raise CommandError(problem)
        if not chosen:
            raise CommandError(
                f"{username}'s permissions give no scope anything to do; give "
                f"{username} a role first (docs/roles.md)."
            )
        lifetime = None
        if days is not None:
            try:
                lifetime = tokens.check_lifetime(timedelta(days=days))
            except tokens.TokenError as exc:
                raise CommandError(f"--days {days}: {exc.message}") from exc
        token, key = ApiToken.objects.create_token(
            user, name=name[:100], scopes=chosen, lifetime=lifetime
        )
        self.stdout.write(key)
        self.stderr.write(
            f"Token {key[:8]}… made for {username} with {', '.join(chosen)}, "
            f"expiring {token.expires_at:%Y-%m-%d %H:%M} UTC; the key above is not "
            "shown again."
        )
