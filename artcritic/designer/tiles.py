"""Links of many image tiles at once: one ``reverse`` per kind of link, not per tile.

A gallery page renders 48 tiles with five links and two signed image URLs each; reversing
and signing per tile in the template was most of the page's time. Here each kind of link is
reversed once and filled in per image, and each image's URLs are signed once.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.urls import reverse

from artcritic.studio.models import Image
from artcritic.studio.storage import url_presigned

_MARK = 987654321  # a pk no real row has yet, replaced by each image's


def _pattern(name: str) -> str:
    return reverse(name, args=[_MARK])


def links_attach(images: Iterable[Image], project_id: int) -> None:
    """Give each image ``detail_url``, ``favourite_url``, ``decide_url``, ``again_url``,
    ``vary_url``, ``full_url`` and ``thumb_url`` (signed, short-lived)."""
    detail = _pattern("studio:image_detail")
    favourite = _pattern("studio:image_favourite")
    decide = _pattern("studio:image_decide")
    composer = reverse("studio:composer", args=[project_id])
    mark = str(_MARK)
    for image in images:
        pk = str(image.pk)
        image.detail_url = detail.replace(mark, pk)  # type: ignore[attr-defined]
        image.favourite_url = favourite.replace(mark, pk)  # type: ignore[attr-defined]
        image.decide_url = decide.replace(mark, pk)  # type: ignore[attr-defined]
        image.again_url = f"{composer}?from={pk}"  # type: ignore[attr-defined]
        image.vary_url = f"{composer}?from={pk}&vary=1"  # type: ignore[attr-defined]
        image.full_url = url_presigned(image.object_key)  # type: ignore[attr-defined]
        image.thumb_url = url_presigned(image.thumbnail_key)  # type: ignore[attr-defined]
