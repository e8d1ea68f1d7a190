from itertools import islice

from django.apps import apps
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from audit.demo import generate
from audit.ingest import ingest
from sphere_stats.cli import positive_int


class Command(BaseCommand):
    help = "Write a realistic, consistent portal history through the ingest validation."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--events", type=positive_int, default=50_000, help="how many events")
        parser.add_argument("--days", type=positive_int, default=365, help="history length in days")
        parser.add_argument(
            "--seed", type=int, default=1, help="random seed (same seed, same history)"
        )
        parser.add_argument("--batch", type=positive_int, default=5_000, help="events per insert")

    def handle(self, *args, events: int, days: int, seed: int, batch: int, **options) -> None:
        if apps.is_installed("facilities"):
            # The history's facilities, placed on the map. By name: audit
            # stands below facilities and does not import it.
            call_command("seed_facilities", verbosity=0, stdout=self.stdout)
        stream = generate(events, days, seed)
        accepted = duplicates = conflicts = 0
        with tqdm(
            total=events, unit="ev", disable=options["verbosity"] < 1, file=self.stderr._out
        ) as bar:
            while chunk := list(islice(stream, batch)):
                result = ingest(chunk)
                accepted += result.accepted
                duplicates += result.duplicates
                conflicts += len(result.conflicts)
                bar.update(len(chunk))
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {accepted} events over {days} days "
                f"({duplicates} already present, {conflicts} conflicting uuids skipped)."
            )
        )
