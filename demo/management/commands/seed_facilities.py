from django.core.management.base import BaseCommand, CommandParser

from demo.sites import FACILITY_NODES, SITES
from facilities.models import Facility


class Command(BaseCommand):
    help = "Create or update the six demo facilities (isi, utah, wisc, clemson, mass, tacc)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would change; write nothing."
        )

    def handle(self, *args, dry_run: bool = False, **options) -> None:
        quiet = options["verbosity"] < 1
        for spec in SITES:
            values = {**spec, "capacity_nodes": FACILITY_NODES[spec["slug"]]}
            slug = values.pop("slug")
            exists = Facility.objects.filter(slug=slug).exists()
            if not dry_run:
                Facility.objects.update_or_create(slug=slug, defaults=values)
            if dry_run:
                verb = "would update" if exists else "would create"
            else:
                verb = "updated" if exists else "created"
            if not quiet:
                self.stdout.write(f"{verb} {slug}: {values['name']}")
        if not quiet:
            self.stdout.write(self.style.SUCCESS(f"{len(SITES)} demo facilities"))
