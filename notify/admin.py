import json

from django.conf import settings
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from notify.models import STATES, Channel, Delivery, DeliveryAttempt
from notify.outbox import enqueue


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "target", "active", "created_at", "deliveries_link")
    list_filter = ("kind", "active")
    search_fields = ("name", "url", "recipients")
    fields = ("name", "kind", "active", "url", "secret", "recipients", "created_at")
    readonly_fields = ("created_at",)
    actions = ["send_test"]
    # A URL typed without a scheme is taken as https (Django 6's default).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="sends to")
    def target(self, channel: Channel) -> str:
        return channel.url if channel.kind == "webhook" else channel.recipients

    @admin.display(description="deliveries")
    def deliveries_link(self, channel: Channel) -> str:
        url = reverse("admin:notify_delivery_changelist") + f"?channel__id__exact={channel.pk}"
        return format_html('<a href="{}">deliveries</a>', url)

    @admin.action(description="Send a test notification")
    def send_test(self, request: HttpRequest, queryset: QuerySet) -> None:
        sent = enqueue(
            queryset,
            topic="test",
            subject="Test notification from sphere-stats",
            payload={"requested_by": request.user.get_username()},
            text=(
                f"{request.user.get_username()} asked for this test notification in the "
                "sphere-stats admin. If you are reading it, the channel works."
            ),
        )
        skipped = queryset.count() - len(sent)
        note = f" ({skipped} inactive channel(s) skipped)" if skipped else ""
        self.message_user(
            request,
            f"Queued {len(sent)} test notification(s){note}; the worker sends them within "
            f"{settings.OUTBOX_SEND_SECONDS} s. Follow them under Deliveries.",
            messages.SUCCESS,
        )


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [(state, state) for state in STATES]

    def queryset(self, request, queryset):
        return queryset.in_state(self.value()) if self.value() in STATES else queryset


class AttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ("at", "ok", "status", "error", "duration_ms")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """The outbox, read-only (GitHub's webhook deliveries page): what was
    sent where, each attempt's answer, and "retry now"."""

    list_display = (
        "created_at",
        "channel",
        "topic",
        "subject",
        "state",
        "attempts",
        "next_attempt_at",
        "last_error",
    )
    list_filter = ("channel", "topic", StateFilter)
    list_select_related = ("channel",)
    search_fields = ("subject", "=delivery_id")
    date_hierarchy = "created_at"
    fields = (
        "delivery_id",
        "channel",
        "topic",
        "subject",
        "state",
        "created_at",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "gave_up_at",
        "last_error",
        "pretty_body",
        "text",
    )
    readonly_fields = fields
    inlines = [AttemptInline]
    actions = ["retry_now"]

    @admin.display(description="webhook body")
    def pretty_body(self, delivery: Delivery) -> str:
        return format_html("<pre>{}</pre>", json.dumps(json.loads(delivery.body), indent=2))

    def has_add_permission(self, request) -> bool:
        return False  # deliveries come from enqueue(), with their channel's rules

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # what was sent is history; "retry now" is the one change

    @admin.action(description="Retry now", permissions=["view"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        # A given-up delivery gets one more attempt; if that fails it is
        # given up again, its give-up time having passed.
        n = queryset.filter(delivered_at__isnull=True).update(
            next_attempt_at=timezone.now(), gave_up_at=None
        )
        self.message_user(
            request,
            f"{n} delivery(ies) will be tried at the worker's next run; delivered ones are "
            "left as they are.",
            messages.SUCCESS,
        )
