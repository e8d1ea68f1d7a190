from django.apps import AppConfig
from django.db.models.signals import post_migrate


def install_aggregates(sender, verbosity: int = 1, **kwargs) -> None:
    """After every `migrate`: the triggers on `events` as declared now, and a
    rebuild of each pre-aggregate whose declaration changed (all of them on a
    database adopted with rows in it), with a progress bar."""
    import sys

    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from audit import triggers

    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        return  # `migrate` to an earlier migration: the tables may not be there yet
    rebuilt = triggers.install(stream=sys.stderr if verbosity >= 1 else None)
    if rebuilt and verbosity >= 1:
        sys.stdout.write(f"  Pre-aggregates built from events: {', '.join(rebuilt)}\n")


class AuditConfig(AppConfig):
    name = "audit"

    def ready(self) -> None:
        # Once, after the last app's migrations (sphere_stats is listed last
        # of the three, but any order works: the hook needs only audit's).
        post_migrate.connect(install_aggregates, sender=self)
        # GET /metrics reads the events and entities figures at each scrape.
        from audit.metrics import EntityCollector, EventCollector
        from sphere_stats.metrics import register

        register(EventCollector(), EntityCollector())
