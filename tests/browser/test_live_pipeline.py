"""The whole product, live, in Chromium: the web server, a real Celery GPU worker, simulated ComfyUI
and Critic started by the worker, PostgreSQL, Redis and S3 — and two designers watching."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from artcritic.gpu.profiles import Profile
from artcritic.jobs.models import Job, JobKind, JobStatus
from artcritic.runtimes.drivers.factory import driver_for
from artcritic.studio.models import HumanDecision, Image, Membership, Project, Role
from artcritic.webserver import web_argv
from tests.browser.conftest import (
    DESKTOP,
    ROOT,
    _database_url,
    _free_port,
    _wait_for_port,
    screenshots,
    server_user_make,
    sign_in,
)
from tests.workerproc import WorkerProcess, gpu_install, sim_profile, start_gpu_worker, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Every phase the dashboard receives, in order, as "phase:runtime" (page-side record).
RECORDER = """
window.__phases = [];
document.addEventListener("artcritic:applied", (e) => {
  const ev = e.detail.event;
  if (ev.type === "job.status" && ev.phase && e.detail.stream.startsWith("project.")) {
    window.__phases.push(`${ev.phase}:${ev.runtime}`);
  }
});
"""


@dataclass
class Server:
    """The web server on a fixed port that a test can stop and start again."""

    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                web_argv(self.port),
                cwd=ROOT,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        _wait_for_port(self.process, self.port, self.log)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@dataclass
class Stack:
    server: Server
    worker: WorkerProcess
    gpu: str
    profile: Profile


@pytest.fixture
def stack(
    transactional_db: None, s3_bucket: str, output_dir: Path, tmp_path: Path, settings: object
) -> Iterator[Stack]:
    gpu = f"live{uuid.uuid4().hex[:6]}"
    profile = sim_profile()
    gpu_install(gpu, profile)
    settings.ARTCRITIC_GPU = gpu  # type: ignore[attr-defined]
    sim_dir = tmp_path / "sim"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "artcritic.settings",
        "DATABASE_URL": _database_url(),
        "S3_BUCKET": s3_bucket,
        "ARTCRITIC_CHANNEL_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],  # type: ignore[attr-defined]
        "ARTCRITIC_GPU": gpu,
        "ARTCRITIC_SIM_DIR": str(sim_dir),
        "ARTCRITIC_DEBUG": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    server = Server(_free_port(), env, output_dir / f"live-pipeline-web-{gpu}.log")
    server.start()
    # Slow enough that each phase is on screen for a moment, fast enough for CI.
    worker = start_gpu_worker(gpu, sim_dir, time_scale=0.05)
    try:
        yield Stack(server, worker, gpu, profile)
    finally:
        worker.stop()
        server.stop()
        for runtime in ("comfyui", "critic"):
            driver_for(runtime, profile, gpu=gpu, env={"ARTCRITIC_SIM_DIR": str(sim_dir)}).stop()


def in_order(seen: list[str], expected: list[str]) -> bool:
    remaining = iter(seen)
    return all(any(item == want for item in remaining) for want in expected)


def new_page(browser: Browser, stack: Stack) -> Page:
    context = browser.new_context(base_url=stack.server.url, viewport=DESKTOP)  # type: ignore[arg-type]
    context.set_default_timeout(20_000)
    return context.new_page()


def test_a_request_goes_live_from_composer_to_critic_to_decisions_seen_by_a_colleague(
    browser: Browser, stack: Stack, output_dir: Path
) -> None:
    dana = server_user_make("dana")
    eli = server_user_make("eli")
    server_user_make("mallory")  # signed in, but not a member
    project = Project.objects.create(
        name="Lamp concepts",
        brief="Task lights for small flats.",
        created_by=dana,
        taste_notes="Quiet forms, honest materials.",
        manufacturability="Sheet aluminium, two bends at most.",
    )
    Membership.objects.create(project=project, user=dana, role=Role.OWNER)
    Membership.objects.create(project=project, user=eli, role=Role.MEMBER)

    # dana keeps the dashboard open in one tab and composes in another.
    dashboard = new_page(browser, stack)
    dashboard.add_init_script(RECORDER)
    sign_in(dashboard, "dana")
    dashboard.goto(f"/projects/{project.pk}/")
    expect(dashboard.locator("[data-live-status]")).to_have_attribute("data-live-status", "live")
    dashboard.evaluate("window.notReloaded = true")
    page = dashboard.context.new_page()
    page.goto(f"/projects/{project.pk}/compose/")
    page.get_by_role("textbox", name="Prompt", exact=True).fill("a brushed aluminium desk lamp")
    page.get_by_label("Model").select_option("flux-dev-fp8")
    page.get_by_label("Seed policy").select_option("fixed")
    page.get_by_label("Seed", exact=True).fill("7")
    page.get_by_label("Steps").fill("12")
    page.get_by_label("Images").fill("2")
    expect(page.locator("[data-admission]")).to_have_attribute("data-state", "fits")
    page.get_by_role("button", name="Queue request").click()

    # The dashboard shows the work live: phases, step progress, images, the swap, reviews.
    expect(page.locator("[data-live-status]")).to_have_attribute("data-live-status", "live")
    generate = Job.objects.get(kind=JobKind.GENERATE, project=project)
    expect(dashboard.locator("#queue-panel")).to_contain_text("a brushed aluminium desk lamp")
    strip = dashboard.locator("#gallery-strip")
    expect(strip.locator("img")).to_have_count(2, timeout=90_000)
    expect(strip).to_contain_text("the Critic recommends", timeout=90_000)
    wait_until(
        lambda: (
            Job.objects.filter(kind=JobKind.REVIEW, project=project, status=JobStatus.DONE).count()
            == 2
        ),
        90,
        what="both reviews",
        log=stack.worker.log,
    )
    expect(strip.locator(".strip__state--approve, .strip__state--reject")).to_have_count(2)
    assert dashboard.evaluate("window.notReloaded") is True
    phases = dashboard.evaluate("window.__phases")
    assert in_order(
        phases,
        [
            "starting:comfyui",
            "loading:comfyui",
            "warming:comfyui",
            "generating:comfyui",
            "uploading:comfyui",
            "releasing:comfyui",
            "starting:critic",
            "loading:critic",
            "warming:critic",
            "reviewing:critic",
        ],
    ), phases
    assert Job.objects.get(pk=generate.pk).status == JobStatus.DONE
    screenshots(dashboard, output_dir, "live-dashboard")

    # eli watches the review screen from another browser.
    colleague = new_page(browser, stack)
    sign_in(colleague, "eli")
    colleague.goto(f"/projects/{project.pk}/review/?filter=all")
    expect(colleague.locator("[data-live-status]")).to_have_attribute("data-state", "live")
    colleague.evaluate("window.notReloaded = true")

    # dana: A on the first image, R on the second.
    page.goto(f"/projects/{project.pk}/review/")
    first, second = Image.objects.filter(project=project).order_by("-created_at", "-id")[:2]
    expect(page.locator("#review-image-heading")).to_contain_text(f"Image {first.pk}")
    page.keyboard.press("a")
    expect(page.locator("#review-image-heading")).to_contain_text(f"Image {second.pk}")
    expect(page.locator("#review-critic")).to_contain_text("Recommends")
    screenshots(page, output_dir, "live-review")
    page.keyboard.press("r")
    wait_until(
        lambda: HumanDecision.objects.filter(user=dana, is_current=True).count() == 2,
        15,
        what="both decisions",
    )
    verdicts = dict(
        HumanDecision.objects.filter(user=dana, is_current=True).values_list("image_id", "verdict")
    )
    assert verdicts == {first.pk: "approve", second.pk: "reject"}

    # eli's screen follows without a reload.
    expect(colleague.locator("#review-decisions")).to_contain_text("dana")
    colleague.goto(f"/projects/{project.pk}/review/?filter=all&image={second.pk}")
    expect(colleague.locator("#review-decisions .team__member", has_text="dana")).to_contain_text(
        "Reject"
    )

    # A request the profile refuses shows its reason; no job starts.
    page.goto(f"/projects/{project.pk}/compose/")
    page.get_by_role("textbox", name="Prompt", exact=True).fill("a cast iron floor lamp")
    # The composer offers FLUX bf16 disabled (it can never fit); a form from before, or a
    # crafted one, still gets the server's refusal with the reason.
    page.locator('option[value="flux-dev-bf16"]').evaluate("(o) => { o.disabled = false; }")
    page.get_by_label("Model").select_option("flux-dev-bf16")
    page.get_by_label("Images").fill("1")
    page.get_by_role("button", name="Queue request").click()
    blocked = page.get_by_test_id("blocked")
    expect(blocked).to_contain_text("30.5 GB")
    expect(blocked).to_contain_text("Next:")
    refused = Job.objects.get(kind=JobKind.GENERATE, request__prompt__text="a cast iron floor lamp")
    assert refused.status == JobStatus.BLOCKED
    assert refused.started_at is None

    # The web server restarts: the dashboard reconnects, resyncs, and shows nothing twice.
    page.goto(f"/projects/{project.pk}/")
    expect(page.locator("[data-live-status]")).to_have_attribute("data-live-status", "live")
    page.evaluate("window.notReloaded = true")
    stack.server.stop()
    expect(page.locator("[data-live-status]")).not_to_have_attribute("data-live-status", "live")
    stack.server.start()
    expect(page.locator("[data-live-status]")).to_have_attribute(
        "data-live-status", "live", timeout=30_000
    )
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("#gallery-strip img")).to_have_count(2)
    expect(page.locator("#job-list")).to_contain_text("a cast iron floor lamp")
    expect(page.get_by_text("a cast iron floor lamp")).to_have_count(1)

    # A signed-in non-member is refused: 404 for the page, 4403 for the socket.
    intruder = new_page(browser, stack)
    sign_in(intruder, "mallory")
    assert intruder.goto(f"/projects/{project.pk}/").status == 404  # type: ignore[union-attr]
    code = intruder.evaluate(
        """(url) => new Promise((resolve) => {
            const ws = new WebSocket(url);
            ws.onclose = (e) => resolve(e.code);
        })""",
        f"ws://127.0.0.1:{stack.server.port}/ws/projects/{project.pk}/",
    )
    assert code == 4403
