from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "notify"
    verbose_name = "Notifications"

    def ready(self) -> None:
        # Registers the worker's `notify.send` job.
        from notify import jobs  # noqa: F401
        from notify.metrics import OutboxCollector
        from sphere_stats.metrics import register

        register(OutboxCollector())
