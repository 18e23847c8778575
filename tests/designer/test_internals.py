"""Designers read failures in their words; the machinery's words (socket paths, exception
text, worker ids) are for staff, who still see everything."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from artcritic.designer.templatetags.studio_tags import (
    designer_action,
    designer_reason,
    is_internal,
)
from artcritic.jobs.models import JobStatus
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import job_make

DOCKER = (
    "Docker Engine at unix:///var/run/docker.sock did not answer while trying to start "
    "comfyui: ('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))"
)
OOM = "ComfyUI ran out of GPU memory in KSampler (node 3) at 1024×1024 × 4. Nothing was retried."


@pytest.mark.parametrize(
    ("text", "internal"),
    [
        (DOCKER, True),
        ("claimed by vm:12627: no job left for critic; swapping to comfyui", True),
        ("/srv/venv/bin/python -m artcritic.sim critic --port 18000 exited with 1", True),
        (OOM, False),
        ("needs ≈ 36.2 GB; profile rtx5090-32gb allows 30.5 GB", False),
        ("Choose a width from 256 to 1536 px", False),
    ],
)
def test_the_machinerys_words_are_recognised(text: str, internal: bool) -> None:
    assert is_internal(text) is internal


def test_a_designer_reads_the_human_part_of_a_reason_and_an_action_they_can_take() -> None:
    assert designer_reason(OOM) == OOM
    assert designer_reason(DOCKER) == (
        "The GPU worker ran into a technical problem; staff can read what happened."
    )
    mixed = "The Artist could not start. " + DOCKER
    assert designer_reason(mixed) == (
        "The Artist could not start. (The technical detail is for staff.)"
    )
    assert designer_action("Start Docker on the GPU host, or point DOCKER_HOST at an engine.") == (
        "Ask an admin to look at this job; the details are in its record."
    )
    assert designer_action("Next: re-run with a batch of 1.") == "Re-run with a batch of 1."


@pytest.mark.django_db
def test_a_raw_runtime_error_is_for_staff_and_the_designer_is_told_whom_to_ask() -> None:
    profile_load()
    dana = user_make("dana")
    stan = user_make("stan", is_staff=True)
    project = project_make(stan, owner=dana)
    job_make(
        request_make(prompt_make(project, dana)),
        status=JobStatus.FAILED,
        error_reason=DOCKER,
        next_action="Start Docker on the GPU host, or point DOCKER_HOST at a running engine.",
    )
    url = reverse("studio:project_detail", args=[project.pk])
    designer, staff = Client(), Client()
    designer.force_login(dana)
    staff.force_login(stan)
    mine = designer.get(url).content.decode()
    assert "docker.sock" not in mine
    assert "FileNotFoundError" not in mine
    assert "The GPU worker ran into a technical problem" in mine
    assert "Ask an admin to look at this job" in mine
    theirs = staff.get(url).content.decode()
    assert "unix:///var/run/docker.sock" in theirs
    assert "DOCKER_HOST" in theirs
