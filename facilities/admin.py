import csv
import io

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from import_export import fields, resources, widgets
from import_export.admin import ImportExportModelAdmin
from import_export.formats.base_formats import CSV, JSON
from import_export.results import Result

from facilities.models import Facility


def csv_record_lines(text: str) -> list[int]:
    """The line each data record of a CSV with a header starts on, read as
    tablib reads it: a quoted value may span lines, blank lines are skipped."""
    reader = csv.reader(io.StringIO(text))
    lines, last_line = [], 0
    for i, record in enumerate(reader):
        if i and record:
            lines.append(last_line + 1)
        last_line = reader.line_num
    return lines


class LineNumberedCSV(CSV):
    """CSV whose datasets remember each record's line, so an error can name
    the line an editor shows, not only the row number."""

    def create_dataset(self, in_stream, **kwargs):
        dataset = super().create_dataset(in_stream, **kwargs)
        if isinstance(in_stream, bytes):
            in_stream = in_stream.decode(self.encoding or "utf-8")
        dataset.record_lines = csv_record_lines(in_stream.removeprefix("\ufeff"))
        return dataset


class FacilityResource(resources.ModelResource):
    """CSV/JSON rows keyed by slug: importing a file twice updates, never duplicates.

    Each row is validated with the model's validators (coordinates in range,
    a valid slug and URL); a bad row is reported by its number (and its CSV
    line) and skipped, and the good rows still import.
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

    def import_data(self, dataset, *args, **kwargs) -> Result:
        result = super().import_data(dataset, *args, **kwargs)
        result.record_lines = getattr(dataset, "record_lines", None)
        return result


def invalid_row_messages(result: Result) -> list[str]:
    """One line per rejected row: its number (1 = the first data row) and,
    for a CSV upload, the file's line it is on ("line 3": the header is line
    1), then what was wrong."""
    record_lines = getattr(result, "record_lines", None) or []
    lines = []
    for row in result.invalid_rows:
        problems = [
            f"{field}: {' '.join(errors)}" for field, errors in row.field_specific_errors.items()
        ]
        problems += list(row.non_field_specific_errors)
        where = f"Row {row.number}"
        if row.number <= len(record_lines):
            where += f" (CSV line {record_lines[row.number - 1]})"
        lines.append(f"{where}: {'; '.join(problems)}")
    return lines


@admin.register(Facility)
class FacilityAdmin(ImportExportModelAdmin):
    resource_classes = [FacilityResource]
    formats = [LineNumberedCSV, JSON]
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
        if result is not None and not result.has_errors() and result.has_validation_errors():
            # The preview's own table gives only row numbers; these add the
            # CSV line.
            for line in invalid_row_messages(result):
                messages.warning(request, f"Will not be imported: {line}")
            if len(result.invalid_rows) < result.total_rows and "confirm_form" not in context:
                context["confirm_form"] = self.create_confirm_form(
                    request, import_form=context["form"]
                )
        return response

    def process_result(self, result: Result, request: HttpRequest) -> HttpResponse:
        for line in invalid_row_messages(result):
            messages.warning(request, f"Not imported: {line}")
        return super().process_result(result, request)
