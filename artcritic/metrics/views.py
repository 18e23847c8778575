"""``/metrics`` for Prometheus, behind a bearer token (ARTCRITIC_METRICS_TOKEN)."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from artcritic.metrics.collector import ArtcriticCollector

SAFE_METHODS = ["GET", "HEAD"]


def registry_make() -> CollectorRegistry:
    """A registry of artcritic's metrics only (no process metrics of whichever web worker)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ArtcriticCollector())
    return registry


def _refused(status: int, message: str) -> HttpResponse:
    response = HttpResponse(message + "\n", status=status, content_type="text/plain")
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="artcritic metrics"'
    return response


@login_not_required  # Prometheus has no session: the bearer token is the credential
def metrics(request: HttpRequest) -> HttpResponse:
    """The metrics in Prometheus' text format, to a scraper holding the token."""
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    token = settings.ARTCRITIC_METRICS_TOKEN
    if not token:
        return _refused(
            403,
            "Metrics are off: ARTCRITIC_METRICS_TOKEN is not set. Next: set it (16+ random "
            "characters) for the web server and give Prometheus the same token.",
        )
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        offered.strip().encode(), token.encode()
    ):
        return _refused(401, "A valid bearer token is required (Authorization: Bearer …).")
    body = generate_latest(registry_make())
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
