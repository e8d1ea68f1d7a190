from django.contrib import admin, messages
from django.utils import timezone

from sphere_stats.models import ApiToken, WorkerJob, forget_tokens


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at")
    fields = ("name", "scopes", "prefix", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        # Secrets are shown once, so tokens are created by the
        # create_api_token command, which prints the secret.
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset) -> None:
        n = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        forget_tokens()  # update() sends no signal
        self.message_user(request, f"Revoked {n} token(s).", messages.SUCCESS)


@admin.register(WorkerJob)
class WorkerJobAdmin(admin.ModelAdmin):
    """Read-only: is the worker alive, and do its jobs succeed?"""

    list_display = ("name", "last_run", "last_ok", "seconds", "handled", "last_error")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
