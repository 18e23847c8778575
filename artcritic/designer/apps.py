from django.apps import AppConfig


class DesignerConfig(AppConfig):
    """The designers' pages: projects, composer, gallery, review screen, images."""

    name = "artcritic.designer"
    label = "designer"
