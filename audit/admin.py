from django.contrib import admin, messages
from django.contrib.admin.views.main import ALL_VAR, PAGE_VAR, ChangeList
from django.contrib.humanize.templatetags.humanize import intcomma
from django.core.paginator import Paginator
from django.http import HttpResponseRedirect, QueryDict
from django.utils import timezone
from django.utils.functional import cached_property
from import_export.admin import ExportMixin
from import_export.formats.base_formats import Format
from import_export.forms import ExportForm

from audit import catalog
from audit.export import FORMATS, Export
from audit.filters import EventFilter
from audit.models import Event


class EstimatedCountPaginator(Paginator):
    """The admin changelist without COUNT(*): at 10M rows an exact count takes
    seconds, so a list uses the planner's estimate once it is large (an exact
    count below that, where it is cheap and the estimate would be rough)."""

    EXACT_BELOW = 10_000
    # The changelist pages with OFFSET, which reads and drops every row
    # before the page: page 200 skips 10,000 rows, page 200,000 all ten
    # million. Deeper pages are not offered (EventAdmin.changelist_view sends
    # them to the explorer, which pages by keyset to any depth).
    MAX_PAGES = 200
    estimated = False

    @cached_property
    def count(self) -> int:
        estimate = self.object_list.estimated_count()
        if estimate > self.EXACT_BELOW:
            self.estimated = True
            return estimate
        return super().count

    @property
    def num_pages(self) -> int:
        return min(super().num_pages, self.MAX_PAGES)


class EventChangeList(ChangeList):
    """The changelist with the count labelled when it is an estimate and page
    links that stop at MAX_PAGES (templates/audit/admin_event_change_list.html)."""

    @property
    def page_links(self) -> list:
        if (self.show_all and self.can_show_all) or not self.multi_page:
            return []
        return list(self.paginator.get_elided_page_range(self.page_num))

    @property
    def show_all_url(self) -> str:
        if self.can_show_all and not self.show_all and self.multi_page:
            return self.get_query_string({ALL_VAR: ""})
        return ""

    @property
    def count_label(self) -> str:
        n = self.result_count
        if self.paginator.estimated:
            return f"about {intcomma(n)} events (estimate)"
        return f"{intcomma(n)} event{'' if n == 1 else 's'}"


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
    # Exact, case-sensitive matches: each is an equality on a btree index
    # (idx_events_subject_ts, idx_events_caller, idx_events_target,
    # idx_events_type_ts), OR-ed in a bitmap scan. "=field" would be
    # UPPER(field) = UPPER(term), which no index serves: a scan of 10M rows.
    search_fields = ("subject__exact", "caller__exact", "target__exact", "event_type__exact")
    search_help_text = (
        "Exact subject, caller, target or event type (case-sensitive). "
        "For anything else, use the events explorer (/events/)."
    )
    # The facet counts ("Show counts") are one COUNT per choice over the
    # filtered table: dozens of scans at 10M rows.
    show_facets = admin.ShowFacets.NEVER
    date_hierarchy = None
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    change_list_template = "audit/admin_event_change_list.html"
    ordering = ("-timestamp", "-event_uuid")
    export_formats = [CSVFormat, JSONFormat, NDJSONFormat]
    export_form_class = ExportForm

    def get_changelist(self, request, **kwargs):
        return EventChangeList

    def changelist_view(self, request, extra_context=None):
        page = request.GET.get(PAGE_VAR, "")
        if page.isdigit() and int(page) > EstimatedCountPaginator.MAX_PAGES:
            last = EstimatedCountPaginator.MAX_PAGES
            self.message_user(
                request,
                f"Page {page} is not offered: the admin shows the newest {last} pages "
                f"({last * self.list_per_page:,} events), because reaching a deep page means "
                "reading every event before it. Narrow the filters, or use the events "
                "explorer (/events/), which pages to any depth.",
                messages.WARNING,
            )
            query = request.GET.copy()
            query[PAGE_VAR] = str(last)
            return HttpResponseRedirect(f"{request.path}?{query.urlencode()}")
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def _do_file_export(self, file_format, request, queryset, export_form=None):
        export = Export(queryset, format=file_format.get_title())
        return export.response(admin_file_stem(request.GET))


def admin_file_stem(params: QueryDict) -> str:
    """The explorer's file name (EventFilter.file_stem) for the changelist's
    filters and search, so an admin download also says what it holds."""
    success = params.get("success__exact")
    described = EventFilter(
        event_types=[params["event_type"]] if params.get("event_type") else [],
        subject_type=params.get("subject_type", ""),
        success={"1": True, "0": False}.get(success) if success else None,
    )
    search = params.get("q", "").strip()
    return described.file_stem(now=timezone.now(), extra=[f"search-{search}"] if search else [])
