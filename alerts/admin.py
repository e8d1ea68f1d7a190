from django import forms
from django.contrib import admin
from django.http import HttpRequest

from alerts.kinds import KINDS, PARAMETER_LABELS, PARAMETERS, kind_choices
from alerts.models import STATUS_CHOICES, AlertRule, Incident


class AlertRuleForm(forms.ModelForm):
    kind = forms.ChoiceField(choices=kind_choices)
    # Tick boxes rather than the array field's comma-separated text.
    statuses = forms.MultipleChoiceField(
        choices=STATUS_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=AlertRule._meta.get_field("statuses").help_text,
    )

    class Meta:
        model = AlertRule
        fields = (
            "name",
            "kind",
            "active",
            "channels",
            "cooldown",
            *PARAMETERS,
        )


def _parameters_help() -> str:
    lines = [
        f"{kind.label}: {', '.join(PARAMETER_LABELS[p] for p in kind.parameters) or 'none'}"
        for kind in KINDS.values()
    ]
    return "Parameters each kind reads (leave the others empty). " + "; ".join(lines) + "."


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    form = AlertRuleForm
    list_display = ("name", "kind", "active", "summary", "cooldown", "channel_names")
    list_filter = ("active", "kind")
    search_fields = ("name",)
    filter_horizontal = ("channels",)
    fieldsets = (
        (None, {"fields": ("name", "kind", "active", "channels", "cooldown")}),
        (
            "Parameters",
            {
                "description": _parameters_help(),
                "fields": PARAMETERS,
            },
        ),
    )

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).prefetch_related("channels")

    @admin.display(description="watches for")
    def summary(self, rule: AlertRule) -> str:
        return rule.describe()

    @admin.display(description="channels")
    def channel_names(self, rule: AlertRule) -> str:
        return ", ".join(c.name for c in rule.channels.all()) or "-"


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "Open"), ("resolved", "Resolved")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    """Read-only: incidents are the engine's record of what it saw and told."""

    list_display = ("rule", "key", "opened_at", "resolved_at", "notified")
    list_filter = (StateFilter, "rule", "notified")
    list_select_related = ("rule",)
    search_fields = ("key", "rule__name")
    date_hierarchy = "opened_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
