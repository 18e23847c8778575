from django.urls import path

from artcritic.studio import views

app_name = "studio"
urlpatterns = [
    path("", views.project_list, name="project_list"),
]
