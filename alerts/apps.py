from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        # Registers the worker's `alerts.evaluate` job.
        from alerts import jobs  # noqa: F401
