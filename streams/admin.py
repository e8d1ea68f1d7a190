import json
import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.humanize.templatetags.humanize import intcomma
from django.utils import timezone

from sphere_stats.webhooks import post
from streams.models import WAITING_COUNT_CAP, StreamDestination, new_token, uncatalogued
from streams.sender import NDJSON


def test_line() -> bytes:
    """One line shaped like an event, of the type `stream_test`, which no
    producer sends: a receiver can tell it apart and drop it."""
    line = {
        "event_uuid": str(uuid.uuid4()),
        "timestamp": timezone.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "event_type": "stream_test",
        "caller": "sphere-stats",
        "subject": "stream",
        "subject_type": "stream",
        "target": None,
        "success": True,
        "error_message": None,
        "payload": {},
    }
    return (json.dumps(line) + "\n").encode()


class StreamDestinationForm(forms.ModelForm):
    url = forms.URLField(
        max_length=500, assume_scheme="https", help_text="http(s) URL the batches are POSTed to"
    )

    class Meta:
        model = StreamDestination
        fields = ("name", "url", "event_types", "active")


@admin.register(StreamDestination)
class StreamDestinationAdmin(admin.ModelAdmin):
    form = StreamDestinationForm
    list_display = (
        "name",
        "url",
        "active",
        "types",
        "events_sent",
        "waiting_events",
        "last_success_at",
        "failing_since",
        "short_error",
    )
    list_filter = ("active",)
    search_fields = ("name", "url")
    fields = ("name", "url", "event_types", "active", "token", "secret")
    readonly_fields = (
        "cursor",
        "events_sent",
        "waiting_events",
        "last_success_at",
        "failing_since",
        "next_attempt_at",
        "last_error",
    )
    actions = ("send_test_line", "new_credentials")

    def get_fields(self, request, obj=None):
        if obj is None:  # the token and secret are generated on creation
            return ("name", "url", "event_types", "active")
        return (*self.fields, *self.readonly_fields)

    def get_readonly_fields(self, request, obj=None):
        return ("token", "secret", *self.readonly_fields) if obj else ()

    @admin.display(description="event types")
    def types(self, obj: StreamDestination) -> str:
        return ", ".join(obj.event_types) or "all"

    @admin.display(description="waiting (feed rows)")
    def waiting_events(self, obj: StreamDestination) -> str:
        waiting = obj.waiting()
        return (
            f"{intcomma(WAITING_COUNT_CAP)}+" if waiting >= WAITING_COUNT_CAP else intcomma(waiting)
        )

    @admin.display(description="cursor (xid, seq)")
    def cursor(self, obj: StreamDestination) -> str:
        return f"({obj.cursor_xid}, {obj.cursor_seq})"

    @admin.display(description="last error")
    def short_error(self, obj: StreamDestination) -> str:
        return obj.last_error[:80]

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if unknown := uncatalogued(obj.event_types):
            messages.warning(
                request,
                f"Not in the event catalog (kept, in case the portal writes them): "
                f"{', '.join(unknown)}",
            )

    @admin.action(description="Send a test line (event_type stream_test)")
    def send_test_line(self, request, queryset) -> None:
        for destination in queryset:
            outcome = post(
                destination.url,
                test_line(),
                secret=destination.secret,
                delivery=f"stream-{destination.pk}-test-{uuid.uuid4()}",
                content_type=NDJSON,
                headers=destination.headers(),
            )
            if outcome.ok:
                messages.success(request, f"{destination}: HTTP {outcome.status}")
            else:
                messages.error(request, f"{destination}: {outcome.error}")

    @admin.action(description="Generate a new token and secret")
    def new_credentials(self, request, queryset) -> None:
        for destination in queryset:
            destination.token, destination.secret = new_token(), new_token()
            destination.save(update_fields=["token", "secret"])
        messages.success(request, "New token and secret: give them to each receiver.")
