from django.contrib import admin
from django.core.paginator import Paginator
from django.utils.functional import cached_property

from audit.models import Event


class EstimatedCountPaginator(Paginator):
    """The admin changelist without COUNT(*): at 10M rows an exact count takes
    seconds, so an unfiltered list uses the planner's estimate instead."""

    @cached_property
    def count(self) -> int:
        query = self.object_list.query
        if not query.where:
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = 'events'")
                row = cursor.fetchone()
                if row and row[0] > 10_000:
                    return row[0]
        return super().count


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    """Read-only: audit records are immutable."""

    list_display = (
        "timestamp",
        "event_type",
        "caller",
        "subject",
        "subject_type",
        "target",
        "success",
    )
    # Filters only on indexed columns, so the changelist stays usable at 10M rows.
    list_filter = ("success", "subject_type")
    search_fields = ("=subject", "=caller", "=target", "=event_type")
    date_hierarchy = None
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    ordering = ("-timestamp", "-event_uuid")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
