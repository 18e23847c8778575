"""Reads over the studio's records that pages of more than one app share.

The gallery pages by keyset (the newest-first order of ``created_at, id``), never by OFFSET,
and reads the team's counts and the Critic's latest verdict from the image's own columns
(kept by database triggers), so a page costs the same at 100 images as at 10,000.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery

from artcritic.studio.models import Favourite, HumanDecision, Image, Project, Verdict

GALLERY_PAGE_SIZE = 24
# Gallery filters: (name, label). The first group is the viewer's own decision.
GALLERY_SHOWS: tuple[tuple[str, str], ...] = (
    ("", "All"),
    ("awaiting", "Awaiting me"),
    ("approved", "Approved by me"),
    ("rejected", "Rejected by me"),
    ("agree", "Critic agrees"),
    ("disagree", "Critic disagrees"),
    ("favourites", "Favourites"),
)
GALLERY_SHOW_NAMES = frozenset(name for name, _label in GALLERY_SHOWS)
_MODE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_CURSOR = re.compile(r"(\d{1,19})\.(\d{1,19})")


def critic_agrees() -> Q:
    """The Critic's latest verdict equals the team's strict majority."""
    return Q(critic_verdict=Verdict.APPROVE, approvals__gt=F("rejections")) | Q(
        critic_verdict=Verdict.REJECT, rejections__gt=F("approvals")
    )


def critic_disagrees() -> Q:
    """The Critic's latest verdict is the opposite of the team's strict majority."""
    return Q(critic_verdict=Verdict.APPROVE, rejections__gt=F("approvals")) | Q(
        critic_verdict=Verdict.REJECT, approvals__gt=F("rejections")
    )


def critic_compared() -> Q:
    """Images with a Critic verdict and a strict human majority (agreement is defined)."""
    return ~Q(critic_verdict="") & ~Q(approvals=F("rejections"))


def mine_current(user: Any, verdict: str | None = None) -> QuerySet[HumanDecision]:
    """The viewer's current decision on the outer image (for Exists/Subquery)."""
    rows = HumanDecision.objects.filter(image=OuterRef("pk"), user=user, is_current=True)
    return rows.filter(verdict=verdict) if verdict else rows


def images_with_mine(images: QuerySet[Image], user: Any) -> QuerySet[Image]:
    """Annotate each image with the viewer's current verdict ('' when undecided) and star."""
    return images.annotate(
        my_verdict=Subquery(mine_current(user).values("verdict")[:1]),
        favourite=Exists(Favourite.objects.filter(image=OuterRef("pk"), user=user)),
    )


def gallery_images(project: Project, user: Any, mine: str = "") -> QuerySet[Image]:
    """The project's images, newest first, with the viewer's verdict and star (``mine``: a
    ``GALLERY_SHOWS`` name; unknown names show everything)."""
    images = Image.objects.filter(project=project).select_related("prompt")
    return images_with_mine(_shown(images, user, mine), user).order_by("-created_at", "-id")


def show_condition(show: str, user: Any) -> Q:
    """The condition of one gallery (or review) filter for ``user``; Q() shows everything."""
    mine = mine_current(user)
    conditions: dict[str, Any] = {
        "awaiting": ~Exists(mine),
        "approved": Exists(mine.filter(verdict=Verdict.APPROVE)),
        "rejected": Exists(mine.filter(verdict=Verdict.REJECT)),
        "agree": critic_agrees(),
        "disagree": critic_disagrees(),
        "favourites": Exists(Favourite.objects.filter(image=OuterRef("pk"), user=user)),
    }
    aliases = {"undecided": "awaiting", Verdict.APPROVE: "approved", Verdict.REJECT: "rejected"}
    condition = conditions.get(aliases.get(show, show))
    return Q(condition) if condition is not None else Q()


def _shown(images: QuerySet[Image], user: Any, show: str) -> QuerySet[Image]:
    return images.filter(show_condition(show, user))


@dataclass(frozen=True)
class Cursor:
    """A place in the newest-first order: an image's ``created_at`` (µs since 1970) and id."""

    micros: int
    pk: int

    @classmethod
    def of(cls, image: Image) -> Cursor:
        delta = image.created_at - datetime(1970, 1, 1, tzinfo=UTC)
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return cls(micros, image.pk)

    @classmethod
    def parse(cls, text: str | None) -> Cursor | None:
        """A cursor from a query string; None for anything that is not one."""
        match = _CURSOR.fullmatch(text or "")
        if not match:
            return None
        micros, pk = int(match.group(1)), int(match.group(2))
        return cls(micros, pk) if micros < 2**62 and pk < 2**62 else None

    @property
    def moment(self) -> datetime:
        seconds, micros = divmod(self.micros, 1_000_000)
        return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=micros)

    def __str__(self) -> str:
        return f"{self.micros}.{self.pk}"

    def older(self) -> Q:
        return Q(created_at__lt=self.moment) | Q(created_at=self.moment, pk__lt=self.pk)

    def newer(self) -> Q:
        return Q(created_at__gt=self.moment) | Q(created_at=self.moment, pk__gt=self.pk)


@dataclass(frozen=True)
class GalleryQuery:
    """What the gallery shows: a filter, a model mode, a day, and where the page starts."""

    show: str = ""
    mode: str = ""
    day: date | None = None
    before: Cursor | None = None  # the page holds images older than this
    after: Cursor | None = None  # the page holds images newer than this (going back)

    @classmethod
    def from_params(cls, params: Any) -> GalleryQuery:
        """Read a query string leniently: an unknown value is ignored, never an error page."""
        show = params.get("show", "")
        mode = params.get("mode", "")
        try:
            day = date.fromisoformat(params.get("day", "")) if params.get("day") else None
        except ValueError:
            day = None
        return cls(
            show=show if show in GALLERY_SHOW_NAMES else "",
            mode=mode if _MODE.fullmatch(mode) else "",
            day=day,
            before=Cursor.parse(params.get("before")),
            after=None if params.get("before") else Cursor.parse(params.get("after")),
        )

    def params(self, **changes: Any) -> dict[str, str]:
        """The filters as query parameters (without a cursor unless given in ``changes``)."""
        values = {
            "show": self.show,
            "mode": self.mode,
            "day": self.day.isoformat() if self.day else "",
        }
        values.update({k: str(v) if v is not None else "" for k, v in changes.items()})
        return {k: v for k, v in values.items() if v}

    @property
    def filtered(self) -> bool:
        return bool(self.show or self.mode or self.day)


@dataclass(frozen=True)
class GalleryPage:
    """One page of the gallery: its images (newest first) and the cursors around it."""

    query: GalleryQuery
    images: list[Image]
    total: int
    start: int  # 1-based position of the first image in the filtered order
    older: Cursor | None
    newer: Cursor | None
    modes: list[str] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.start + len(self.images) - 1


def gallery_filtered(project: Project, user: Any, query: GalleryQuery) -> QuerySet[Image]:
    """The images a gallery query selects (no cursor), without annotations or order."""
    images = _shown(Image.objects.filter(project=project), user, query.show)
    if query.mode:
        images = images.filter(request__model_mode=query.mode)
    if query.day:
        images = images.filter(created_at__date=query.day)
    return images


def gallery_page(
    project: Project, user: Any, query: GalleryQuery, size: int = GALLERY_PAGE_SIZE
) -> GalleryPage:
    """A keyset page of the gallery in three queries, whatever the page or the project size."""
    filtered = gallery_filtered(project, user, query)
    rows = images_with_mine(filtered, user).select_related("prompt", "request", "job")
    if query.after is not None:
        # Going back: the ``size`` images just newer than the cursor, shown newest first.
        chunk = list(rows.filter(query.after.newer()).order_by("created_at", "id")[: size + 1])
        if len(chunk) <= size:  # back at the newest images: show the first page whole
            return gallery_page(project, user, replace(query, after=None), size)
        more_newer = True
        images = list(reversed(chunk[:size]))
        more_older = True
    else:
        if query.before is not None:
            rows = rows.filter(query.before.older())
        chunk = list(rows.order_by("-created_at", "-id")[: size + 1])
        more_older = len(chunk) > size
        images = chunk[:size]
        more_newer = query.before is not None
    aggregates: dict[str, Any] = {"total": Count("pk")}
    if images:
        aggregates["newer"] = Count("pk", filter=Cursor.of(images[0]).newer())
    counts = filtered.aggregate(**aggregates)
    return GalleryPage(
        query=query,
        images=images,
        total=int(counts["total"]),
        start=int(counts.get("newer") or 0) + 1,
        older=Cursor.of(images[-1]) if images and more_older else None,
        newer=Cursor.of(images[0]) if images and more_newer else None,
    )
