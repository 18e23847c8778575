"""Staff pages outside the admin."""

from django.urls import path

from artcritic.staff import views

app_name = "staff"
urlpatterns = [
    path("measurements/", views.measurements, name="measurements"),
    path("what-if/", views.whatif, name="whatif"),
]
