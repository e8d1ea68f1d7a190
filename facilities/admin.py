from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from import_export import fields, resources, widgets
from import_export.admin import ImportExportModelAdmin
from import_export.formats.base_formats import CSV, JSON
from import_export.results import Result

from facilities.models import Facility


class FacilityResource(resources.ModelResource):
    """CSV/JSON rows keyed by slug: importing a file twice updates, never duplicates.

    Each row is validated with the model's validators (coordinates in range,
    a valid slug and URL); a bad row is reported by its number and skipped,
    and the good rows still import.
    """

    # Numbers stay numbers in JSON exports.
    latitude = fields.Field("latitude", "latitude", widgets.FloatWidget(coerce_to_string=False))
    longitude = fields.Field("longitude", "longitude", widgets.FloatWidget(coerce_to_string=False))
    capacity_nodes = fields.Field(
        "capacity_nodes", "capacity_nodes", widgets.IntegerWidget(coerce_to_string=False)
    )

    class Meta:
        model = Facility
        import_id_fields = ("slug",)
        fields = (
            "slug",
            "name",
            "latitude",
            "longitude",
            "kind",
            "description",
            "url",
            "capacity_nodes",
        )
        export_order = fields
        clean_model_instances = True
        skip_unchanged = True
        report_skipped = True


def invalid_row_messages(result: Result) -> list[str]:
    """One line per rejected row: its number (1 = the first data row, the line
    after a CSV's header) and what was wrong."""
    lines = []
    for row in result.invalid_rows:
        problems = [
            f"{field}: {' '.join(errors)}" for field, errors in row.field_specific_errors.items()
        ]
        problems += list(row.non_field_specific_errors)
        lines.append(f"Row {row.number}: {'; '.join(problems)}")
    return lines


@admin.register(Facility)
class FacilityAdmin(ImportExportModelAdmin):
    resource_classes = [FacilityResource]
    formats = [CSV, JSON]
    list_display = ("name", "slug", "kind", "latitude", "longitude", "capacity_nodes")
    search_fields = ("slug", "name", "kind")
    list_filter = ("kind",)
    ordering = ("name",)

    def import_action(self, request: HttpRequest, **kwargs) -> HttpResponse:
        # django-import-export refuses to confirm an import with any invalid
        # row. The preview still lists each bad row with its number; offering
        # the confirm button lets the good rows go in (the bad ones are skipped).
        response = super().import_action(request, **kwargs)
        context = getattr(response, "context_data", None)
        if not context:
            return response
        result = context.get("result")
        if (
            result is not None
            and not result.has_errors()
            and result.has_validation_errors()
            and len(result.invalid_rows) < result.total_rows
            and "confirm_form" not in context
        ):
            context["confirm_form"] = self.create_confirm_form(request, import_form=context["form"])
        return response

    def process_result(self, result: Result, request: HttpRequest) -> HttpResponse:
        for line in invalid_row_messages(result):
            messages.warning(request, f"Not imported: {line}")
        return super().process_result(result, request)
