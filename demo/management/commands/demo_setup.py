import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.models import Event
from sphere_stats.embedded_db import public_hosts
from sphere_stats.models import ApiToken

CREDENTIALS = Path(settings.BASE_DIR) / "var" / "demo_credentials.txt"


class Command(BaseCommand):
    help = "First run of `make run`: a demo admin, an API token and demo data (local use only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--events", type=int, default=60_000, help="demo events to seed")

    def handle(self, *args, events: int, **options) -> None:
        public = public_hosts(settings.ALLOWED_HOSTS)
        if public:
            # The demo admin's password sits in a file: never on a server
            # that answers to a real host name.
            raise CommandError(
                "demo_setup creates a demo admin and is for a local checkout only; "
                f"ALLOWED_HOSTS names {', '.join(public)}. Create real accounts with "
                "`manage.py createsuperuser` instead."
            )
        if not CREDENTIALS.exists():
            self._create_credentials()
        if not Event.objects.exists():
            # seed_demo also places the demo facilities on the map.
            self.stdout.write(f"Seeding {events} demo events (once)…")
            call_command("seed_demo", events=events, stdout=self.stdout, stderr=self.stderr)
        # Every run: the seeded reports, or the last run's, have gone stale
        # by now, and the map would open all unknown.
        call_command("demo_reporter", once=True, verbosity=0)
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(CREDENTIALS.read_text().rstrip()))
        self.stdout.write(f"(kept in {CREDENTIALS.relative_to(settings.BASE_DIR)})")

    def _create_credentials(self) -> None:
        password = secrets.token_urlsafe(12)
        user, _ = User.objects.get_or_create(username="admin")
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        ApiToken.objects.filter(name="demo").delete()
        _, token = ApiToken.issue("demo", ["ingest", "read"])
        CREDENTIALS.parent.mkdir(exist_ok=True)
        CREDENTIALS.write_text(
            "Demo login:   admin / " + password + "\n"
            "API token:    " + token + "   (scopes: ingest, read)\n"
            "Try:          curl -H 'Authorization: Bearer " + token + "' "
            f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/api/v1/events?limit=5\n"
        )
        CREDENTIALS.chmod(0o600)
