"""Designer pages: projects, composer, gallery, review screen, images and decisions."""

from django.urls import path

from artcritic.designer import feedback_views, gallery_views, views

app_name = "studio"
urlpatterns = [
    path("", views.project_list, name="project_list"),
    path("projects/<int:project_id>/", views.project_detail, name="project_detail"),
    path("projects/<int:project_id>/edit/", views.project_edit, name="project_edit"),
    path("projects/<int:project_id>/jobs/", views.project_jobs, name="project_jobs"),
    path("projects/<int:project_id>/compose/", views.composer, name="composer"),
    path(
        "projects/<int:project_id>/compose/check/",
        views.composer_check,
        name="composer_check",
    ),
    path("projects/<int:project_id>/images/", gallery_views.gallery, name="gallery"),
    path(
        "projects/<int:project_id>/images/decide/",
        gallery_views.gallery_decide,
        name="gallery_decide",
    ),
    path("projects/<int:project_id>/images/zip/", gallery_views.gallery_zip, name="gallery_zip"),
    path("projects/<int:project_id>/compare/", gallery_views.compare, name="compare"),
    path("projects/<int:project_id>/review/", views.review, name="review"),
    path("projects/<int:project_id>/review/decide/", views.review_decide, name="review_decide"),
    path("projects/<int:project_id>/review/undo/", views.review_undo, name="review_undo"),
    path(
        "projects/<int:project_id>/feedback/",
        feedback_views.project_feedback,
        name="project_feedback",
    ),
    path(
        "projects/<int:project_id>/decisions.export",
        feedback_views.decisions_export,
        name="decisions_export",
    ),
    path("projects/<int:project_id>/taste/ask/", feedback_views.taste_ask, name="taste_ask"),
    path(
        "projects/<int:project_id>/taste/<int:proposal_id>/",
        feedback_views.taste_proposal_decide,
        name="taste_decide",
    ),
    path("images/<int:image_id>/", views.image_detail, name="image_detail"),
    path("images/<int:image_id>/decision/", views.image_decide, name="image_decide"),
    path(
        "images/<int:image_id>/review-again/",
        views.image_review_again,
        name="image_review_again",
    ),
    path(
        "images/<int:image_id>/favourite/",
        gallery_views.image_favourite,
        name="image_favourite",
    ),
    path("favicon.ico", views.favicon, name="favicon"),
]
