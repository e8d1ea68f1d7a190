"""The event store's figures for GET /metrics (sphere_stats/metrics.py), read
from the pre-aggregates at each scrape; AuditConfig.ready registers them."""

from collections.abc import Iterator

from django.db.models import Count, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from audit.catalog import ENTITY_KINDS
from audit.models import DailyCount, Entity

OUTCOMES = {True: "success", False: "failure"}


class EventCollector(Collector):
    """sphere_events_total{event_type, outcome}: the events stored, summed
    from event_counts_daily (one row per UTC day, type and outcome) rather
    than counted in `events`, so a scrape costs the same at 10 million events
    as at ten. The triggers on `events` keep it exact whoever writes the
    rows; a prune lowers it, which Prometheus reads as a counter reset."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "sphere_events",
            "Events stored, by event type and outcome (a prune lowers it: a counter reset).",
            labels=["event_type", "outcome"],
        )
        totals = (
            DailyCount.objects.values("event_type", "success")
            .annotate(total=Sum("n"))
            .values_list("event_type", "success", "total")
            .order_by("event_type", "success")
        )
        for event_type, success, total in totals:
            family.add_metric([event_type, OUTCOMES[success]], total)
        yield family


class EntityCollector(Collector):
    """sphere_entities{kind, state}: the entities that exist now (the fold
    of their lifecycle events, table `entities`), every state of every kind
    included at 0, so a state that empties reads 0 and not no data."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "sphere_entities",
            "Entities that exist now (not gone), by kind and state.",
            labels=["kind", "state"],
        )
        counts = {(kind.name, state): 0 for kind in ENTITY_KINDS.values() for state in kind.states}
        # idx_entities_current.
        counted = (
            Entity.objects.current()
            .values("kind", "state")
            .annotate(n=Count("*"))
            .values_list("kind", "state", "n")
        )
        counts.update({(kind, state): n for kind, state, n in counted})
        for (kind, state), n in sorted(counts.items()):
            family.add_metric([kind, state], n)
        yield family
