"""Designer-grade pages in Debian's Chromium at 1440×900 and 375×812: the gallery with its
lightbox, compare, bulk actions and zip; the review screen fitting the viewport; the latest
images strip; the dashboard's internals for staff only; confirmations; CJK and emoji."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from artcritic.gpu.models import Gpu, RuntimeStatus
from artcritic.gpu.runtime_state import runtime_state_set
from artcritic.jobs.models import Job, JobPhase, JobStatus, Phase
from artcritic.studio.models import HumanDecision, Image, Project
from tests.browser.conftest import element_shot, in_thread, server_user_make, session_cookie
from tests.factories import profile_load, project_make, prompt_make, request_make
from tests.factories_media import image_make, images_stored, job_make, review_make

pytestmark = pytest.mark.browser

WIDE = {"width": 1440, "height": 900}
PHONE = {"width": 375, "height": 812}
CJK_PROMPT = "陶瓷水壶 ティーポット 주전자 🙂🎨 a teal ceramic kettle"


def browse(browser: Browser, server: str, user: AbstractUser, viewport: dict[str, int]) -> Page:
    context = browser.new_context(base_url=server, viewport=viewport)  # type: ignore[arg-type]
    context.set_default_timeout(15_000)
    session_cookie(context, server, user)
    return context.new_page()


def shot(page: Page, output_dir: Path, name: str) -> None:
    """A screenshot of what a person sees, once the fonts it needs have arrived."""
    page.evaluate("document.fonts.ready.then(() => true)")
    page.wait_for_timeout(150)
    # ui-<page>-1440.png and ui-<page>-375.png: apart from the other tests' screenshots.
    size = name.replace("-desktop", "-1440").replace("-phone", "-375")
    page.screenshot(path=output_dir / f"ui-{size}.png", full_page=False)


def top_of(page: Page, selector: str) -> float:
    """Where the first element matching ``selector`` starts on the page, once it is shown."""
    locator = page.locator(selector).first
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box is not None, selector
    return float(box["y"])


def too_wide(page: Page) -> list[str]:
    """Elements that stick out of the viewport (outside any scrolling or clipping container)."""
    return list(
        page.evaluate(
            """() => {
      const limit = document.documentElement.clientWidth + 0.5;
      const clipped = (el) => {
        for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
          const style = getComputedStyle(p);
          if (["auto", "scroll", "hidden", "clip"].includes(style.overflowX)) return true;
          if (p.tagName === "DIALOG" && !p.open) return true;
        }
        return false;
      };
      const out = [];
      for (const el of document.querySelectorAll("body *")) {
        const box = el.getBoundingClientRect();
        if (!box.width || getComputedStyle(el).visibility === "hidden") continue;
        if (box.right > limit && !clipped(el)) {
          const name = `${el.tagName.toLowerCase()}.${el.className}`;
          out.push(`${name} ${Math.round(box.left)}–${Math.round(box.right)}`);
        }
      }
      return out;
    }"""
        )
    )


def glyphs(page: Page, selector: str, chars: list[str]) -> list[dict[str, Any]]:
    """Each character drawn in the element's own font: its advance width and a pixel hash.
    Tofu (a missing glyph) draws the same empty box for every character."""
    return list(
        page.evaluate(
            """async ([selector, chars]) => {
      const el = document.querySelector(selector);
      const style = getComputedStyle(el);
      const font = `32px ${style.fontFamily}`;
      await document.fonts.ready;
      for (const ch of chars) await document.fonts.load(font, ch);
      const canvas = document.createElement("canvas");
      canvas.width = 64; canvas.height = 64;
      const ctx = canvas.getContext("2d");
      const out = [];
      for (const ch of chars) {
        ctx.clearRect(0, 0, 64, 64);
        ctx.font = font;
        ctx.fillStyle = "#000";
        ctx.fillText(ch, 8, 44);
        const data = ctx.getImageData(0, 0, 64, 64).data;
        let hash = 0, ink = 0;
        for (let i = 3; i < data.length; i += 4) {
          hash = (hash * 31 + data[i]) >>> 0;
          if (data[i] > 0) ink++;
        }
        const range = document.createRange();
        const text = [...el.childNodes].find((n) => n.nodeType === 3 && n.textContent.includes(ch));
        let domWidth = -1;
        if (text) {
          const at = text.textContent.indexOf(ch);
          range.setStart(text, at);
          range.setEnd(text, at + ch.length);
          domWidth = range.getBoundingClientRect().width;
        }
        out.push({ch, width: ctx.measureText(ch).width, hash, ink, domWidth});
      }
      return out;
    }""",
            [selector, chars],
        )
    )


@pytest.fixture
def studio(app_server: str) -> dict[str, Any]:
    """Dana's project: a CJK/emoji request (3 images) and a lamp request (3), some reviewed."""
    profile_load()
    dana = server_user_make("dana")
    project = project_make(owner=dana, name="Kettles & lamps")
    lamp = prompt_make(project, dana, text="a brushed aluminium desk lamp, warm orange shade")
    lamps = images_stored(request_make(lamp, count=3, seed=100))
    kettle = prompt_make(project, dana, text=CJK_PROMPT)
    kettles = images_stored(request_make(kettle, count=3, seed=7))
    for image, verdict in zip(kettles, ("approve", "reject", "approve"), strict=True):
        review_make(image, verdict=verdict, rationale={"taste": "Calm teal glaze."})
    return {"dana": dana, "project": project, "images": kettles + lamps, "server": app_server}


def test_the_gallery_lightbox_compare_bulk_and_zip_work_at_desktop_and_phone(
    browser: Browser, studio: dict[str, Any], output_dir: Path
) -> None:
    project: Project = studio["project"]
    page = browse(browser, studio["server"], studio["dana"], WIDE)
    page.goto(f"/projects/{project.pk}/images/")
    expect(page.locator(".group")).to_have_count(2)
    expect(page.locator(".group__prompt").first).to_contain_text("陶瓷水壶")
    expect(page.locator(".tile")).to_have_count(6)
    shot(page, output_dir, "gallery-desktop")

    # CJK and emoji: real glyphs (distinct drawings, non-zero widths), never tofu. Tofu draws
    # the same empty box for every missing character, so two of each script must differ.
    drawn = glyphs(page, ".group__prompt", ["陶", "水", "テ", "ポ", "주", "전", "🙂", "🎨"])
    for glyph in drawn:
        assert glyph["width"] > 0, glyph
        assert glyph["domWidth"] > 0, glyph
        assert glyph["ink"] > 20, glyph
    assert len({g["hash"] for g in drawn}) == len(drawn), drawn
    faces = page.evaluate(
        "[...document.fonts].filter((f) => f.status === 'loaded').map((f) => f.family)"
    )
    assert {"Artcritic CJK", "Artcritic Hangul", "Artcritic Emoji"} <= {
        face.strip("\"'") for face in faces
    }, faces

    # Lightbox: large, keyboard navigation, zoom, decide, close.
    page.locator("[data-lightbox-open]").first.click()
    dialog = page.locator("#lightbox")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#lightbox-title")).to_contain_text("1 of 6")
    box = dialog.locator("[data-lightbox-img]").bounding_box()
    assert box is not None
    assert box["width"] > 500
    assert box["y"] >= 0
    assert box["y"] + box["height"] <= WIDE["height"]
    shot(page, output_dir, "lightbox-desktop")
    page.keyboard.press("ArrowRight")
    expect(dialog.locator("#lightbox-title")).to_contain_text("2 of 6")
    page.keyboard.press("z")
    expect(dialog.locator("[data-lightbox-zoom]")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("z")
    page.keyboard.press("a")
    second = studio["images"][1]
    expect(page.locator(f'.tile[data-image="{second.pk}"]')).to_have_class(re.compile("tile--approve"))
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert HumanDecision.objects.get(image=second, user=studio["dana"]).verdict == "approve"

    # Selection: compare two, then download them as a zip, then reject them in bulk.
    first, third = studio["images"][0], studio["images"][2]
    for image in (first, third):
        page.locator(f'.tile[data-image="{image.pk}"] [data-pick]').check()
    expect(page.locator("[data-selection-count]")).to_have_text("2 images selected")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download zip").click()
    archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
    assert sorted(archive.namelist()) == sorted(
        f"image-{i.pk}-seed-{i.seed}.{ext}" for i in (first, third) for ext in ("png", "json")
    )
    sidecar = json.loads(archive.read(f"image-{first.pk}-seed-{first.seed}.json"))
    assert sidecar["prompt"] == CJK_PROMPT
    assert archive.read(f"image-{third.pk}-seed-{third.seed}.png").startswith(b"\x89PNG")
    page.get_by_role("button", name="Compare").click()
    expect(page).to_have_url(re.compile(r"/compare/\?"))
    expect(page.locator(".compare__col")).to_have_count(2)
    shot(page, output_dir, "compare-desktop")
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    assert too_wide(page) == []
    shot(page, output_dir, "compare-phone")
    page.set_viewport_size(WIDE)  # type: ignore[arg-type]
    page.go_back()
    for image in (first, third):
        page.locator(f'.tile[data-image="{image.pk}"] [data-pick]').check()
    page.locator("[data-selection]").get_by_role("button", name="Reject").click()
    expect(page.locator(".message--success")).to_contain_text("Rejected 2 images.")
    assert set(
        HumanDecision.objects.filter(user=studio["dana"], verdict="reject").values_list(
            "image_id", flat=True
        )
    ) == {first.pk, third.pk}

    # The phone: two columns, nothing sticks out, the lightbox fills the screen.
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    page.goto(f"/projects/{project.pk}/images/")
    assert too_wide(page) == []
    header = page.locator(".site-header").bounding_box()
    assert header is not None
    assert header["height"] < 60, header  # one row, not three
    brief_tab = page.get_by_role("link", name="Brief", exact=True).bounding_box()
    assert brief_tab is not None
    assert brief_tab["x"] + brief_tab["width"] <= PHONE["width"]
    shot(page, output_dir, "gallery-phone")
    page.locator("[data-lightbox-open]").first.click()
    box = page.locator("#lightbox [data-lightbox-img]").bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= PHONE["width"] + 0.5
    shot(page, output_dir, "lightbox-phone")
    page.context.close()


def test_the_review_image_fits_the_viewport_with_the_scores_beside_it_and_swipes_on_phones(
    browser: Browser, studio: dict[str, Any], output_dir: Path
) -> None:
    project: Project = studio["project"]
    for viewport, name in ((WIDE, "desktop"), (PHONE, "phone")):
        page = browse(browser, studio["server"], studio["dana"], viewport)
        page.goto(f"/projects/{project.pk}/review/?filter=all&image={studio['images'][0].pk}")
        image = page.locator(".review-figure__frame img")
        expect(image).to_be_visible()
        # Not wait_for_function: its eval() is refused by the page's CSP (script-src 'self').
        expect(image).to_have_js_property("complete", True)
        shot(page, output_dir, f"review-{name}")
        box = image.bounding_box()
        assert box is not None
        assert box["y"] >= 0, box
        assert box["y"] + box["height"] <= viewport["height"], (name, box)
        assert box["x"] + box["width"] <= viewport["width"], (name, box)
        if name == "desktop":
            scores = page.locator(".scorebars").bounding_box()
            assert scores is not None
            assert scores["x"] > box["x"] + box["width"] - 1  # beside the image
            assert scores["y"] < viewport["height"]  # above the fold
        else:
            assert too_wide(page) == []
        if name == "phone":
            before = page.url
            following = page.locator("[data-review-next]").get_attribute("href") or ""
            wanted = re.search(r"image=(\d+)", following)
            assert wanted is not None
            page.locator(".review-figure__frame").evaluate(
                """(frame) => {
                  const at = (type, x) => frame.dispatchEvent(new PointerEvent(type, {
                    pointerType: "touch", clientX: x, clientY: 300, bubbles: true,
                    isPrimary: true}));
                  at("pointerdown", 300); at("pointerup", 80);
                }"""
            )
            expect(page).not_to_have_url(before)
            expect(page).to_have_url(re.compile(f"image={wanted.group(1)}$"))
        # The image page: the image fitted, every review, Review again.
        page.goto(f"/images/{studio['images'][0].pk}/")
        expect(page.get_by_role("button", name="Review again")).to_be_visible()
        if name == "phone":
            assert too_wide(page) == []
        shot(page, output_dir, f"image-{name}")
        page.context.close()


@pytest.mark.parametrize("count", [1, 5, 12])
def test_the_latest_images_strip_never_overlaps_nor_spills_out_of_its_card(
    browser: Browser, app_server: str, output_dir: Path, count: int
) -> None:
    profile_load()
    olive = server_user_make("olive")
    project = project_make(owner=olive, name="Strip")
    request = request_make(prompt_make(project, olive), count=count)
    for index in range(count):
        image_make(request, index)  # rows only: the strip's boxes do not wait for pixels
    for viewport in (WIDE, PHONE):
        page = browse(browser, app_server, olive, viewport)
        page.goto(f"/projects/{project.pk}/")
        # After the live socket's first resync the panels were repainted once: measure then.
        expect(page.locator("[data-live-status]")).to_have_attribute("data-live-status", "live")
        page.wait_for_load_state("networkidle")
        items = page.locator(".strip__item")
        expect(items).to_have_count(count)
        boxes = items.evaluate_all(
            "(all) => all.map((e) => { const b = e.getBoundingClientRect();"
            " return {x: b.x, y: b.y, width: b.width, height: b.height}; })"
        )
        card = page.locator("#gallery-strip").evaluate(
            "(e) => { const b = e.getBoundingClientRect();"
            " return {x: b.x, y: b.y, width: b.width, height: b.height}; }"
        )
        if count == 12:
            element_shot(
                page.locator("#gallery-strip"), output_dir / f"ui-strip-12-{viewport['width']}.png"
            )
        for n, box in enumerate(boxes):
            assert box is not None
            assert box["x"] >= card["x"]
            assert box["x"] + box["width"] <= card["x"] + card["width"] + 0.5
            assert box["y"] + box["height"] <= card["y"] + card["height"] + 0.5
            for other in boxes[n + 1 :]:
                assert other is not None
                apart = (
                    box["x"] + box["width"] <= other["x"] + 0.5
                    or other["x"] + other["width"] <= box["x"] + 0.5
                    or box["y"] + box["height"] <= other["y"] + 0.5
                    or other["y"] + other["height"] <= box["y"] + 0.5
                )
                assert apart, (box, other)
        if viewport is PHONE:
            assert too_wide(page) == []
        page.context.close()


def test_internals_are_for_staff_and_a_running_job_is_cancelled_only_after_a_yes(
    browser: Browser, app_server: str, output_dir: Path
) -> None:
    profile_load()
    dana = server_user_make("dana")
    stan = server_user_make("stan")
    stan.is_staff = True
    stan.save(update_fields=["is_staff"])
    project = project_make(stan, owner=dana, name="Lamps")
    gpu = Gpu.objects.get(name="sim0")
    in_thread(
        lambda: runtime_state_set(
            gpu,
            "critic",
            RuntimeStatus.UNHEALTHY,
            detail="/srv/venv/bin/python -m artcritic.sim critic --port 18000 exited with 1",
            simulated=True,
        )
    )
    job = job_make(
        request_make(prompt_make(project, dana, text="a folding stool"), count=4),
        status=JobStatus.RUNNING,
        phase=Phase.LOADING,
        phase_runtime="comfyui",
        phase_started_at=timezone.now(),
        progress_total=4,
        submitted_by=dana,
    )
    JobPhase.objects.create(
        job=job,
        status=JobStatus.RUNNING,
        phase=Phase.LOADING,
        started_at=timezone.now(),
        detail="claimed by vm:12627: no job left for critic; swapping to comfyui",
    )
    internals = ("vm:12627", "/srv/venv/bin/python")
    designer = browse(browser, app_server, dana, WIDE)
    designer.goto(f"/projects/{project.pk}/")
    expect(designer.locator(f'.qjob[data-job="{job.pk}"]')).to_be_visible()
    html = designer.content()
    for text in internals:
        assert text not in html
    expect(designer.locator(".runtime--unhealthy")).to_contain_text("An admin has the details")
    shot(designer, output_dir, "dashboard-desktop")
    designer.set_viewport_size(PHONE)  # type: ignore[arg-type]
    assert too_wide(designer) == []
    # One column on a phone: the designer's work first, the GPU, then images and costs.
    tops = {
        name: top_of(designer, selector)
        for name, selector in (
            ("work", ".queue-panel"),
            ("gpu", ".gpu-panel"),
            ("images", ".strip"),
            ("costs", ".costs-panel"),
        )
    }
    assert tops["work"] < tops["gpu"] < tops["images"] < tops["costs"], tops
    shot(designer, output_dir, "dashboard-phone")
    designer.set_viewport_size(WIDE)  # type: ignore[arg-type]

    staff = browse(browser, app_server, stan, WIDE)
    staff.goto(f"/projects/{project.pk}/")
    details = staff.locator("details.internals")
    expect(details.first).to_be_visible()
    for text in internals:
        assert text in staff.content()
    staff.context.close()

    # Cancel asks first; "Keep it" changes nothing, "Cancel the generation" cancels.
    designer.get_by_role("button", name=re.compile("^Cancel")).click()
    question = designer.locator("dialog.confirm")
    expect(question).to_be_visible()
    expect(question).to_contain_text("It has been running")
    expect(question).to_contain_text("0 of 4 images are done and are kept")
    shot(designer, output_dir, "confirm-cancel-desktop")
    question.get_by_role("button", name="Keep it").click()
    expect(question).to_be_hidden()
    job.refresh_from_db()
    assert not job.cancel_requested
    designer.get_by_role("button", name=re.compile("^Cancel")).click()
    question.get_by_role("button", name="Cancel the generation").click()
    expect(designer.locator(f'.qjob[data-job="{job.pk}"] .badge')).to_have_text("Cancelling…")
    job.refresh_from_db()
    assert job.cancel_requested
    assert designer.request.get("/favicon.ico").status == 200
    designer.context.close()


def test_the_composer_highlights_what_the_live_check_names_and_keeps_a_long_paste_whole(
    browser: Browser, studio: dict[str, Any], output_dir: Path
) -> None:
    project: Project = studio["project"]
    page = browse(browser, studio["server"], studio["dana"], WIDE)
    page.goto(f"/projects/{project.pk}/compose/")
    expect(page.locator('option[value="flux-dev-bf16"]')).to_be_disabled()
    page.locator("#id_text").fill("a ceramic kettle with a bamboo handle")
    page.get_by_label("Width").fill("1000")
    page.get_by_label("Height").fill("100")
    page.get_by_label("Steps").fill("500")
    panel = page.locator("[data-admission]")
    expect(panel).to_contain_text("Fix the highlighted values")
    for name in ("height", "steps"):
        expect(page.locator(f'[data-field="{name}"]')).to_have_class(re.compile("field--flagged"))
        expect(page.locator(f'[data-field="{name}"] [data-field-live]')).to_be_visible()
    expect(page.locator('[data-field="cfg"]')).not_to_have_class(re.compile("field--flagged"))
    page.get_by_role("button", name="16:9").click()
    expect(page.get_by_label("Width")).to_have_value("1344")
    expect(page.get_by_label("Height")).to_have_value("768")
    page.get_by_label("Steps").fill("20")
    expect(panel).to_contain_text("Fits on sim-32gb")
    long = "a ceramic kettle with a bamboo handle " * 395  # 14,615 characters
    page.locator("#id_text").fill(long)
    assert page.locator("#id_text").input_value() == long  # nothing cut in the browser
    expect(page.locator('[data-count-for="id_text"]')).to_contain_text("over the limit of 4,000")
    shot(page, output_dir, "composer-desktop")
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    assert too_wide(page) == []
    shot(page, output_dir, "composer-phone")
    page.set_viewport_size(WIDE)  # type: ignore[arg-type]
    page.get_by_role("button", name="Queue request").click()
    expect(page.locator(".field--error")).to_contain_text("characters; the most is 4,000")
    assert page.locator("#id_text").input_value() == long  # kept as typed
    assert not Image.objects.filter(prompt__text=long.strip()).exists()
    assert not Job.objects.filter(request__prompt__text=long.strip()).exists()
    page.context.close()


def test_a_finished_batch_or_a_blocked_job_notifies_once_the_designer_allowed_it(
    browser: Browser, app_server: str
) -> None:
    profile_load()
    dana = server_user_make("dana")
    project = project_make(owner=dana, name="Notified")
    context = browser.new_context(base_url=app_server, viewport=WIDE)  # type: ignore[arg-type]
    context.grant_permissions(["notifications"], origin=app_server)
    # Record what the page asks the browser to show (the real Notification still runs).
    context.add_init_script(
        """(() => {
          const Real = window.Notification;
          window.__notes = [];
          window.Notification = class extends Real {
            constructor(title, options) { super(title, options); window.__notes.push(title); }
          };
        })();"""
    )
    session_cookie(context, app_server, dana)
    page = context.new_page()
    page.goto(f"/projects/{project.pk}/")
    expect(page.locator("[data-notify-text]")).to_have_text(
        "Browser notifications are on for this project's batches."
    )

    def live(**event: Any) -> None:
        page.evaluate(
            "(e) => document.dispatchEvent(new CustomEvent('artcritic:live', {detail: e}))",
            {"type": "job.status", "project": project.pk, **event},
        )

    live(job=1, status="done", detail={"kind": "generate"})
    live(job=1, status="done", detail={"kind": "generate"})  # a resync repeats it: once
    live(job=2, status="done", detail={"kind": "review"})  # reviews finish one by one: quiet
    live(job=3, status="blocked", detail={"kind": "generate", "reason": "needs 36.2 GB"})
    live(job=4, status="done", project=project.pk + 1, detail={"kind": "generate"})
    assert page.evaluate("window.__notes") == [
        "Your request finished",
        "Your request was blocked before it started",
    ]
    context.close()


def test_the_dashboard_stays_a_bounded_height_however_long_the_history_and_queue(
    browser: Browser, app_server: str, output_dir: Path
) -> None:
    profile_load()
    olive = server_user_make("olive")
    project = project_make(owner=olive, name="Busy")
    now = timezone.now()
    for n in range(30):
        request = request_make(prompt_make(project, olive, text=f"a side table, take {n}"))
        status = (JobStatus.DONE, JobStatus.BLOCKED, JobStatus.FAILED)[n % 3]
        reason = {} if status == JobStatus.DONE else {"error_reason": "x", "next_action": "y"}
        job_make(request, status=status, finished_at=now, **reason)
    for n in range(10):
        job_make(
            request_make(prompt_make(project, olive, text=f"a stool, waiting {n}")),
            status=JobStatus.ADMITTED,
            phase=Phase.WAITING_FOR_GPU,
            phase_started_at=now,
        )
    request = request_make(prompt_make(project, olive), count=20)
    for index in range(20):
        image_make(request, index)
    page = browse(browser, app_server, olive, WIDE)
    page.goto(f"/projects/{project.pk}/")
    expect(page.locator("[data-live-status]")).to_have_attribute("data-live-status", "live")
    page.wait_for_load_state("networkidle")
    expect(page.locator(".qgroup")).to_have_count(6)
    expect(page.locator(".hrow")).to_have_count(6)
    expect(page.locator(".strip__item")).to_have_count(12)
    height = page.evaluate("document.documentElement.scrollHeight")
    page.screenshot(path=output_dir / "ui-dashboard-busy-1440.png", full_page=True)
    assert height <= 2000, height  # 10 waiting, 30 finished, 20 images: ~1,760 px
    page.context.close()
