"""Which database each query goes to: sphere_stats.db chooses, per request,
whether the pages' reads go to the read replica (DATABASE_REPLICA_URL)."""

from sphere_stats import db

# The apps whose tables the pages, stats, read API and exports read. Users,
# sessions, API tokens and the rate-limit counters stay on the primary: a
# login or a token created a moment ago must work at once, replica lag or not.
REPLICA_APPS = frozenset({"audit", "dashboards", "facilities"})

# GET and HEAD of these paths read only (their writes, such as a rate-limit
# count, use the primary all the same). The overview is "/" exactly; a page
# not listed reads from the primary, which is always right, only busier.
REPLICA_PATHS = ("/top/", "/search/", "/users/", "/orgs/", "/projects/", "/experiments/")
REPLICA_PATHS += ("/catalog/", "/events/", "/facilities/", "/api/v1/")


def reads_from_replica(method: str, path: str) -> bool:
    """Whether a request may read the pages' data from the replica."""
    if method not in ("GET", "HEAD"):
        return False
    return path == "/" or path.startswith(REPLICA_PATHS)


class ReplicaRouter:
    """Reads of REPLICA_APPS' models go to the replica in a request routed
    there (sphere_stats.db.read_alias); every write goes to the primary."""

    def db_for_read(self, model, **hints) -> str | None:
        alias = db.read_alias()
        if alias != "default" and model._meta.app_label in REPLICA_APPS:
            return alias
        return None

    def db_for_write(self, model, **hints) -> str | None:
        return "default"

    def allow_relation(self, obj1, obj2, **hints) -> bool | None:
        # The same rows on both: an event read from the replica may be
        # linked to a row written on the primary.
        if {obj1._state.db, obj2._state.db} <= {"default", db.REPLICA, None}:
            return True
        return None

    def allow_migrate(self, alias: str, app_label: str, **hints) -> bool | None:
        # A replica is read-only; it gets the schema by replication.
        return False if alias == db.REPLICA else None
