from django.db.models import Max, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from audit import catalog
from audit.models import Event, HourlyCount
from sphere_stats.roles import Role, role_required


@require_GET
@role_required(Role.VIEWER)
def catalog_page(request: HttpRequest) -> HttpResponse:
    # Counts come from the hourly pre-aggregate (small); "last seen" is one
    # index probe per type on idx_events_type_ts, so the page stays fast at
    # any table size.
    received = dict(
        HourlyCount.objects.values("event_type").annotate(n=Sum("n")).values_list("event_type", "n")
    )

    def last_seen(name: str):
        return Event.objects.filter(event_type=name).aggregate(last=Max("timestamp"))["last"]

    types = [
        {
            "spec": spec,
            "received": received.get(name, 0),
            "last": last_seen(name) if received.get(name) else None,
        }
        for name, spec in catalog.CATALOG.items()
    ]
    uncatalogued = [
        {"name": name, "received": n, "last": last_seen(name)}
        for name, n in sorted(received.items(), key=lambda item: -item[1])
        if name not in catalog.CATALOG
    ]
    return render(request, "audit/catalog.html", {"types": types, "uncatalogued": uncatalogued})
