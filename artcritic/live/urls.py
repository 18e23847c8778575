"""The live dashboard's fragments, the GPU pages, and cancelling a job."""

from django.urls import path

from artcritic.live import views

app_name = "live"
urlpatterns = [
    path("gpus/", views.gpu_list, name="gpu_list"),
    path("gpus/<slug:name>/", views.gpu_detail, name="gpu_detail"),
    path("gpus/<slug:name>/panel/", views.gpu_panel, name="gpu_panel"),
    path("gpus/<slug:name>/queue/", views.gpu_queue, name="gpu_queue"),
    path("projects/<int:project_id>/queue/", views.project_queue, name="project_queue"),
    path("projects/<int:project_id>/latest-images/", views.project_images, name="project_images"),
    path("projects/<int:project_id>/costs/", views.project_costs, name="project_costs"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel_view, name="job_cancel"),
]
