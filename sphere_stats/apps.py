from django.apps import AppConfig


class SphereStatsConfig(AppConfig):
    name = "sphere_stats"
    verbose_name = "API access"

    def ready(self) -> None:
        from sphere_stats import signals  # noqa: F401  (connects the receivers)
        from sphere_stats.metrics import register
        from sphere_stats.worker import WorkerCollector

        # GET /metrics: is the background worker alive?
        register(WorkerCollector())
