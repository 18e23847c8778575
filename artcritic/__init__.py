"""artcritic: an Artist generates, a Critic reviews, designers decide — on one GPU."""

from artcritic.celery import app as celery_app

__all__ = ["celery_app"]
