from django.core.management.base import BaseCommand, CommandParser

from audit.demo import FACILITY_NODES
from facilities.models import Facility

# The demo facilities, at the sites they are named after. Capacities match the
# host names audit.demo allocates (<slug>-n001 … <slug>-nNNN).
DEMO_FACILITIES = [
    {
        "slug": "isi",
        "name": "USC ISI",
        "latitude": 33.9802,
        "longitude": -118.4400,
        "kind": "compute",
        "description": "USC Information Sciences Institute, Marina del Rey, California.",
        "url": "https://www.isi.edu/",
    },
    {
        "slug": "utah",
        "name": "Utah",
        "latitude": 40.7649,
        "longitude": -111.8421,
        "kind": "compute",
        "description": "University of Utah, Salt Lake City.",
        "url": "https://www.utah.edu/",
    },
    {
        "slug": "wisc",
        "name": "Wisconsin",
        "latitude": 43.0766,
        "longitude": -89.4125,
        "kind": "compute",
        "description": "University of Wisconsin–Madison.",
        "url": "https://www.wisc.edu/",
    },
    {
        "slug": "clemson",
        "name": "Clemson",
        "latitude": 34.6834,
        "longitude": -82.8374,
        "kind": "compute",
        "description": "Clemson University, South Carolina.",
        "url": "https://www.clemson.edu/",
    },
    {
        "slug": "mass",
        "name": "Massachusetts (MGHPCC)",
        "latitude": 42.2036,
        "longitude": -72.6079,
        "kind": "datacenter",
        "description": "Massachusetts Green High Performance Computing Center, Holyoke; run with UMass Amherst.",
        "url": "https://www.mghpcc.org/",
    },
    {
        "slug": "tacc",
        "name": "TACC",
        "latitude": 30.3903,
        "longitude": -97.7262,
        "kind": "datacenter",
        "description": "Texas Advanced Computing Center, Austin.",
        "url": "https://www.tacc.utexas.edu/",
    },
]


class Command(BaseCommand):
    help = "Create or update the six demo facilities (isi, utah, wisc, clemson, mass, tacc)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would change; write nothing."
        )

    def handle(self, *args, dry_run: bool = False, **options) -> None:
        quiet = options["verbosity"] < 1
        for spec in DEMO_FACILITIES:
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
            self.stdout.write(self.style.SUCCESS(f"{len(DEMO_FACILITIES)} demo facilities"))
