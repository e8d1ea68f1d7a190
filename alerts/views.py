from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from alerts.kinds import KINDS, PARAMETER_LABELS
from alerts.models import AlertRule, Incident
from sphere_stats.models import WorkerJob
from sphere_stats.roles import Role, role_required

RECENT_RESOLVED = 20
EVALUATE_JOB = "alerts.evaluate"
# The evaluation is late when its last run is older than this many intervals.
LATE_AFTER_INTERVALS = 4


def _parameters(rule: AlertRule) -> list[tuple[str, str]]:
    """The parameters the rule's kind reads, in words, with their values."""
    kind = KINDS.get(rule.kind)
    names = kind.parameters if kind else ()
    values = []
    for name in names:
        value = getattr(rule, name)
        if isinstance(value, list):
            value = ", ".join(value)
        values.append((PARAMETER_LABELS[name], str(value) if value not in (None, "") else "any"))
    return values


def _worker(now) -> dict:
    jobs = list(WorkerJob.objects.order_by("name"))
    evaluate = next((j for j in jobs if j.name == EVALUATE_JOB), None)
    late_after = timedelta(seconds=LATE_AFTER_INTERVALS * settings.ALERT_EVALUATE_SECONDS)
    return {
        "jobs": jobs,
        "evaluate": evaluate,
        "late": evaluate is not None and now - evaluate.last_run > late_after,
    }


@require_GET
@role_required(Role.ADMIN)
def alerts_page(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    rules = AlertRule.objects.filter(active=True).prefetch_related("channels")
    incidents = Incident.objects.select_related("rule")
    context = {
        "rules": [{"rule": r, "parameters": _parameters(r)} for r in rules],
        "inactive": AlertRule.objects.filter(active=False).count(),
        "open": list(incidents.open()),
        "resolved": list(incidents.resolved()[:RECENT_RESOLVED]),
        "worker": _worker(now),
        "now": now,
    }
    return render(request, "alerts/index.html", context)
