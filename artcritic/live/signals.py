"""When a user's access may have ended, their live sockets are told at once.

A sign-out, a password change, a deactivation, a deleted account and a membership removed
(or added: redaction on GPU streams changes) each publish ``events.access_changed`` for
that user after commit; every socket of theirs then checks its session and project again
and closes (4401 or 4403) if it no longer may see what it shows.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest

from artcritic.events import access_changed
from artcritic.studio.models import Membership

User = get_user_model()
# The fields whose change can end a session or what it may see.
ACCESS_FIELDS = ("password", "is_active")


@receiver(user_logged_out, dispatch_uid="live.access.logged_out")
def _signed_out(sender: Any, request: HttpRequest | None, user: Any, **_: Any) -> None:
    if user is None or not getattr(user, "pk", None):
        return
    session = getattr(request, "session", None) if request is not None else None
    access_changed(user.pk, signed_out_session=str(getattr(session, "session_key", "") or ""))


@receiver(pre_save, sender=User, dispatch_uid="live.access.user_before")
def _user_before_save(sender: Any, instance: Any, **_: Any) -> None:
    if not instance.pk:
        return
    before = User.objects.filter(pk=instance.pk).values(*ACCESS_FIELDS).first()
    instance._access_changed = before is not None and any(
        before[name] != getattr(instance, name) for name in ACCESS_FIELDS
    )


@receiver(post_save, sender=User, dispatch_uid="live.access.user_after")
def _user_saved(sender: Any, instance: Any, created: bool, **_: Any) -> None:
    if not created and getattr(instance, "_access_changed", False):
        access_changed(instance.pk)


@receiver(post_delete, sender=User, dispatch_uid="live.access.user_deleted")
def _user_deleted(sender: Any, instance: Any, **_: Any) -> None:
    access_changed(instance.pk)


@receiver(post_save, sender=Membership, dispatch_uid="live.access.membership_saved")
@receiver(post_delete, sender=Membership, dispatch_uid="live.access.membership_deleted")
def _membership_changed(sender: Any, instance: Membership, **_: Any) -> None:
    access_changed(instance.user_id)
