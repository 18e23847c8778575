from django.apps import AppConfig


class MetricsConfig(AppConfig):
    """Prometheus metrics: read from PostgreSQL and the stored NVML readings at scrape time."""

    name = "artcritic.metrics"
    label = "metrics"
    verbose_name = "Metrics"
