from django.contrib import admin
from django.core.paginator import Paginator
from django.utils import timezone
from django.utils.functional import cached_property
from import_export.admin import ExportMixin
from import_export.formats.base_formats import Format
from import_export.forms import ExportForm

from audit import catalog
from audit.export import FORMATS, Export
from audit.models import Event


class EstimatedCountPaginator(Paginator):
    """The admin changelist without COUNT(*): at 10M rows an exact count takes
    seconds, so a list uses the planner's estimate once it is large (an exact
    count below that, where it is cheap and the estimate would be rough)."""

    EXACT_BELOW = 10_000

    @cached_property
    def count(self) -> int:
        estimate = self.object_list.estimated_count()
        if estimate > self.EXACT_BELOW:
            return estimate
        return super().count


class StreamingFormat(Format):
    """An export format of audit.export: streamed, never built in memory."""

    name = "csv"

    def get_title(self) -> str:
        return self.name

    def get_extension(self) -> str:
        return self.name

    def get_content_type(self) -> str:
        return FORMATS[self.name]

    def is_binary(self) -> bool:
        return False

    def can_export(self) -> bool:
        return True


class CSVFormat(StreamingFormat):
    name = "csv"


class JSONFormat(StreamingFormat):
    name = "json"


class NDJSONFormat(StreamingFormat):
    name = "ndjson"


class ChoicesFilter(admin.SimpleListFilter):
    """A filter whose choices come from the catalog, not from SELECT DISTINCT
    over ten million rows; each value is an equality on an indexed column."""

    column = ""
    values: list[str] = []

    def lookups(self, request, model_admin):
        return [(v, v) for v in self.values]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(**{self.column: value}) if value else queryset


class EventTypeFilter(ChoicesFilter):
    title = "event type"
    parameter_name = column = "event_type"  # idx_events_type_ts
    values = sorted(catalog.CATALOG)


class SubjectTypeFilter(ChoicesFilter):
    title = "subject type"
    parameter_name = column = "subject_type"  # idx_events_subject_ts
    values = sorted({spec.subject_type for spec in catalog.CATALOG.values()})


@admin.register(Event)
class EventAdmin(ExportMixin, admin.ModelAdmin):
    """Read-only: audit records are immutable. Export streams through
    audit.export (the explorer's writer), so it cannot exhaust memory."""

    list_display = (
        "timestamp",
        "event_type",
        "caller",
        "subject",
        "subject_type",
        "target",
        "success",
    )
    # Filters only on indexed columns (success is a cheap filter on the
    # timestamp scan), with fixed choices, so the changelist stays usable at
    # 10M rows.
    list_filter = ("success", EventTypeFilter, SubjectTypeFilter)
    search_fields = ("=subject", "=caller", "=target", "=event_type")
    date_hierarchy = None
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    ordering = ("-timestamp", "-event_uuid")
    export_formats = [CSVFormat, JSONFormat, NDJSONFormat]
    export_form_class = ExportForm

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def _do_file_export(self, file_format, request, queryset, export_form=None):
        export = Export(queryset, format=file_format.get_title())
        stamp = timezone.now().strftime("%Y%m%dT%H%MZ")
        return export.response(f"events_admin_{stamp}")
