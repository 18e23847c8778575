"""Signing in, throttled sign-in, and designers changing or resetting their password."""

from __future__ import annotations

import re

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.core import mail
from django.test import Client
from django.urls import reverse

from tests.factories import PASSWORD, sign_in, user_make

pytestmark = pytest.mark.django_db

LIMIT = settings.AXES_FAILURE_LIMIT


def attempt(client: Client, username: str, password: str, address: str = "10.9.8.7") -> int:
    """One sign-in through the real login form from ``address``; the status code."""
    response = client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address
    )
    return response.status_code


def test_wrong_passwords_lock_that_account_from_that_address_even_for_the_right_one() -> None:
    user_make("dana")
    client = Client()
    for _ in range(LIMIT - 1):
        assert attempt(client, "dana", "not-her-password") == 200  # the form again, with an error
    assert attempt(client, "dana", "not-her-password") == 429

    response = client.post(
        reverse("login"), {"username": "dana", "password": PASSWORD}, REMOTE_ADDR="10.9.8.7"
    )
    assert response.status_code == 429
    page = response.content.decode()
    assert f"There were {LIMIT} wrong passwords for this account from your address" in page
    assert "ask an administrator to unlock the account" in page
    assert "_auth_user_id" not in client.session


def test_the_lockout_is_per_username_and_address_pair() -> None:
    user_make("dana")
    user_make("eli")
    for _ in range(LIMIT):
        attempt(Client(), "dana", "wrong")
    # Dana from another address, and Eli from the attacker's address, still sign in.
    assert attempt(Client(), "dana", PASSWORD, address="10.1.1.1") == 302
    assert attempt(Client(), "eli", PASSWORD) == 302


def test_a_success_before_the_limit_resets_the_count() -> None:
    user_make("dana")
    for _ in range(LIMIT - 1):
        attempt(Client(), "dana", "wrong")
    assert attempt(Client(), "dana", PASSWORD) == 302
    for _ in range(LIMIT - 1):
        attempt(Client(), "dana", "wrong")
    assert attempt(Client(), "dana", PASSWORD) == 302


def test_staff_unlock_an_account_in_the_admin() -> None:
    user_make("dana")
    for _ in range(LIMIT):
        attempt(Client(), "dana", "wrong")
    assert attempt(Client(), "dana", PASSWORD) == 429
    admin = Client()
    admin.force_login(user_make("root", is_staff=True, is_superuser=True))
    locked = AccessAttempt.objects.get(username="dana")
    listing = admin.get(reverse("admin:axes_accessattempt_changelist")).content.decode()
    assert "dana" in listing
    response = admin.post(
        reverse("admin:axes_accessattempt_delete", args=[locked.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert attempt(Client(), "dana", PASSWORD) == 302


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("x" * 10_000, "y"),
        ("dana\x00", "p"),
        ("<script>alert(1)</script>", "' OR 1=1 --"),
        ("", ""),
    ],
)
def test_hostile_sign_in_input_is_refused_plainly(username: str, password: str) -> None:
    user_make("dana")
    response = Client().post(reverse("login"), {"username": username, "password": password})
    assert response.status_code in (200, 429)
    assert "<script>alert(1)</script>" not in response.content.decode()


def test_a_designer_changes_their_password_and_their_other_browsers_are_signed_out() -> None:
    user_make("dana")
    here, elsewhere = Client(), Client()
    sign_in(here, "dana")
    sign_in(elsewhere, "dana")
    page = here.get(reverse("password_change")).content.decode()
    assert "Change your password" in page

    wrong = here.post(
        reverse("password_change"),
        {
            "old_password": "nope",
            "new_password1": "a new 5ecret lamp",
            "new_password2": "a new 5ecret lamp",
        },
    )
    assert wrong.status_code == 200
    assert "Your old password was entered incorrectly" in wrong.content.decode()

    done = here.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "a new 5ecret lamp",
            "new_password2": "a new 5ecret lamp",
        },
    )
    assert done.status_code == 302
    assert here.get(reverse("studio:project_list")).status_code == 200
    assert elsewhere.get(reverse("studio:project_list")).status_code == 302  # to the login
    sign_in(Client(), "dana", "a new 5ecret lamp")


def test_the_password_pages_need_a_signed_in_designer() -> None:
    response = Client().get(reverse("password_change"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_a_forgotten_password_is_reset_by_a_one_time_link() -> None:
    user_make("dana")  # dana@example.test
    client = Client()
    response = client.post(reverse("password_reset"), {"email": "dana@example.test"})
    assert response.status_code == 302
    assert "Check your email" in client.get(response["Location"]).content.decode()
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/]+(/password-reset/\S+/)", mail.outbox[0].body)
    assert link is not None
    form = client.get(link.group(1), follow=True)
    assert "Set a new password" in form.content.decode()
    new = {"new_password1": "lamps in the morning", "new_password2": "lamps in the morning"}
    assert client.post(form.redirect_chain[-1][0], new).status_code == 302
    sign_in(Client(), "dana", "lamps in the morning")
    # The link works once.
    again = Client().get(link.group(1), follow=True).content.decode()
    assert "This link no longer works" in again


def test_an_unknown_address_gets_the_same_answer_and_no_mail() -> None:
    response = Client().post(reverse("password_reset"), {"email": "nobody@example.test"})
    assert response.status_code == 302
    assert mail.outbox == []


def test_without_a_mail_server_the_reset_page_says_to_ask_an_administrator(
    settings: object,
) -> None:
    settings.ARTCRITIC_PASSWORD_RESET_BY_EMAIL = False  # type: ignore[attr-defined]
    user_make("dana")
    page = Client().get(reverse("password_reset"))
    assert page.status_code == 200
    assert "ask an administrator to set a new password for you" in page.content.decode()
    refused = Client().post(reverse("password_reset"), {"email": "dana@example.test"})
    assert refused.status_code == 200
    assert mail.outbox == []
