from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.models import ApiToken


class Command(BaseCommand):
    help = (
        "Make a read-API token for a user and print its key once (only a hash is "
        "stored). Clients send it as `Authorization: Token <key>`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What the token is for.")

    def handle(self, *args: Any, username: str, name: str, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(
                f"No user {username!r}; create it first (manage.py createsuperuser, "
                "or in the admin)."
            )
        _, key = ApiToken.objects.create_token(user, name=name[:100])
        self.stdout.write(key)
        self.stderr.write(
            f"Token {key[:8]}… made for {username}; the key above is not shown again."
        )
