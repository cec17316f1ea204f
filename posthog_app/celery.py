"""The Celery app; `celery -A posthog_app worker -B` finds it here."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "posthog_app.settings")

app = Celery("posthog_app")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
