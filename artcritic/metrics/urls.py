"""/metrics."""

from django.urls import path

from artcritic.metrics import views

app_name = "metrics"
urlpatterns = [path("metrics", views.metrics, name="metrics")]
