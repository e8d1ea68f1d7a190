"""The facilities' figures for GET /metrics (sphere_stats/metrics.py), read at
each scrape from what the map's table shows; FacilitiesConfig.ready registers them."""

from collections.abc import Iterator

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from facilities.status import STATES
from facilities.summary import facility_rows


class FacilityCollector(Collector):
    """Each facility's status now and its nodes in use against its capacity,
    from facilities.summary.facility_rows: the status as the map shows it
    (unknown when the latest report is older than its hold time, its
    payload.interval or FACILITY_STALE_AFTER if longer, or there is none),
    the nodes as the table counts them (distinct hosts of the realizations
    and materializations allocated and not freed; cached for up to
    USAGE_CACHE_SECONDS, as the table is)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = GaugeMetricFamily(
            "sphere_facility_status",
            f"1 for each facility's current status, 0 for its other states ({', '.join(STATES)}).",
            labels=["facility", "status"],
        )
        in_use = GaugeMetricFamily(
            "sphere_facility_nodes_in_use",
            "Nodes (distinct hosts) held by the realizations and materializations at a facility.",
            labels=["facility"],
        )
        capacity = GaugeMetricFamily(
            "sphere_facility_nodes_capacity",
            "Physical nodes at a facility (its capacity_nodes).",
            labels=["facility"],
        )
        for row in facility_rows(timezone.now()):
            for state in STATES:
                status.add_metric([row.slug, state], 1 if row.status.status == state else 0)
            in_use.add_metric([row.slug], row.usage.in_use)
            capacity.add_metric([row.slug], row.facility.capacity_nodes)
        yield from (status, in_use, capacity)
