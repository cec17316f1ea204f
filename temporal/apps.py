from django.apps import AppConfig


class TemporalConfig(AppConfig):
    """Installed only so `manage.py run_temporal_worker` is found; workflows stay Django-free."""

    name = "temporal"
    label = "temporal_worker"
    verbose_name = "Temporal worker"
