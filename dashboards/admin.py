from django.contrib import admin

from dashboards.models import ReportRun


@admin.register(ReportRun)
class ReportRunAdmin(admin.ModelAdmin):
    """The weekly report's sends, read-only. Deleting a slot's row makes the
    worker send that slot again (dashboards/models.py CLAIM_SQL)."""

    list_display = ("slot", "ok", "attempts", "sent_at", "recipients", "error")
    list_filter = ("ok",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
