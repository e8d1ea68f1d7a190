from django.apps import AppConfig


class SphereStatsConfig(AppConfig):
    name = "sphere_stats"
    verbose_name = "API access"
