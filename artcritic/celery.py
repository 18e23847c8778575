"""The Celery application: one queue per GPU (``gpu.<name>``) plus ``default``."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artcritic.settings")

app = Celery("artcritic")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
