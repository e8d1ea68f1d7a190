from django.core.management.base import BaseCommand, CommandError, CommandParser

from sphere_stats.models import SCOPES, ApiToken


class Command(BaseCommand):
    help = "Create an API token and print its secret (shown once) on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="a unique name, e.g. the client service")
        parser.add_argument(
            "--scope",
            action="append",
            choices=SCOPES,
            required=True,
            dest="scopes",
            help="repeat for several scopes",
        )

    def handle(self, *args, name: str, scopes: list[str], **options) -> None:
        if ApiToken.objects.filter(name=name).exists():
            raise CommandError(
                f"A token named {name!r} exists; revoke it in the admin or pick another name."
            )
        token, raw = ApiToken.issue(name, scopes)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created token {token.name!r} with scopes {', '.join(token.scopes)}."
            )
        )
        self.stdout.write("Store it now; it will not be shown again:")
        self.stdout.write(raw)
