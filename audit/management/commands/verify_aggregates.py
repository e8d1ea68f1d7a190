import sys

from django.core.management.base import BaseCommand

from audit import aggregates, triggers
from audit.management.commands.rebuild_aggregates import _moment


class Command(BaseCommand):
    help = (
        "Compare every pre-aggregate with the events table, print each difference and "
        "exit 1 on drift; --repair rebuilds what differs."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--since", help="counts of the hours and days from here (RFC 3339)")
        parser.add_argument("--until", help="counts of the hours and days before here (RFC 3339)")
        parser.add_argument(
            "--repair", action="store_true", help="rebuild each pre-aggregate that differs"
        )

    def handle(self, *args, since: str | None, until: str | None, repair: bool, **options):
        start, end = _moment(since), _moment(until)
        drifted = self._report(start, end)
        if not drifted:
            self.stdout.write(self.style.SUCCESS("Every pre-aggregate equals the events table."))
            return
        if not repair:
            self.stderr.write(
                self.style.ERROR(
                    f"{len(drifted)} pre-aggregates differ from the events table "
                    "(run again with --repair to rebuild them)."
                )
            )
            sys.exit(1)
        by_name = {a.name: a for a in aggregates.AGGREGATES}
        for name in drifted:
            triggers.rebuild_one(
                by_name[name], self.stderr if options["verbosity"] else None, start, end
            )
        if self._report(start, end, quiet=True):
            self.stderr.write(self.style.ERROR("Still different after the rebuild."))
            sys.exit(1)
        self.stdout.write(self.style.SUCCESS(f"Repaired: {', '.join(drifted)}."))

    def _report(self, start, end, quiet: bool = False) -> list[str]:
        drifted = []
        for name, found in triggers.differences(start, end):
            if found:
                drifted.append(name)
                if not quiet:
                    for line in found:
                        self.stdout.write(line)
        return drifted
