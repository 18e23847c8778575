import pytest
from django.db import IntegrityError, transaction

from tests.factories import project_make, prompt_make, request_make, user_make

pytestmark = pytest.mark.django_db


def test_a_request_is_never_edited_after_submission() -> None:
    owner = user_make()
    request = request_make(prompt_make(project_make(owner=owner), owner))
    request.steps = 5
    with pytest.raises(Exception, match="stored as submitted"), transaction.atomic():
        request.save()


def test_width_must_be_a_multiple_of_8() -> None:
    owner = user_make()
    prompt = prompt_make(project_make(owner=owner), owner)
    with pytest.raises(IntegrityError), transaction.atomic():
        request_make(prompt, width=1001)
