"""Staff's measurements page: every GPU's ETA accuracy and duty cycle, and the break-even view."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.utils import timezone

from artcritic.gpu.costs import break_even
from artcritic.gpu.models import Gpu, HardwareProfile
from artcritic.gpu.profiles import ProfileError, profile_from_data
from artcritic.jobs.accounting import duty_cycles, eta_accuracy, image_figures
from artcritic.jobs.whatif import comparison_rows
from artcritic.jobs.whatif_history import WhatIfRefused, whatif_run
from artcritic.staff.charts import NARROW_HEIGHT, NARROW_WIDTH, break_even_chart
from artcritic.staff.forms import BreakEvenForm, WhatIfForm
from artcritic.studio.access import user_of

SAFE_METHODS = ["GET", "HEAD"]


def measurements(request: HttpRequest) -> HttpResponse:
    """ETA accuracy and duty cycle per GPU; local cost per image against a cloud price."""
    user = user_of(request)
    if not user.is_staff:
        raise Http404("No such page.")  # like the admin: staff only, and no hint otherwise
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    gpus = {gpu.name: gpu for gpu in Gpu.objects.select_related("active_profile")}
    names = sorted(gpus)
    now = timezone.now()
    form = BreakEvenForm(request.GET or None, gpus=names)
    context: dict[str, object] = {
        "form": form,
        "accuracy": eta_accuracy(names),
        "duty": duty_cycles(names, since=now - timedelta(days=30), now=now),
        "gpus": names,
    }
    if form.is_bound and form.is_valid():
        context.update(_break_even(gpus[form.cleaned_data["gpu"]], form.cleaned_data, now))
    return render(request, "staff/measurements.html", context)


def _break_even(gpu: Gpu, data: dict[str, object], now: datetime) -> dict[str, object]:
    days = int(str(data["days"]))
    since = now - timedelta(days=days)
    try:
        profile = profile_from_data(gpu.active_profile.data)
    except ProfileError as exc:
        return {"problem": f"The active profile of {gpu.name} is invalid: {exc}"}
    if profile.economics is None:
        return {
            "problem": f"Profile {profile.name} has no [economics] section, so nothing on "
            f"{gpu.name} is priced. Next: add the electricity price, the card's price and "
            "amortisation hours and the host's idle watts to it."
        }
    figures = image_figures(gpu.name, since=since)
    per_image = figures.electricity_per_image
    busy = figures.busy_s_per_image
    if per_image is None or busy is None:
        return {
            "problem": f"No priced image was made on {gpu.name} in the last {days} days, so "
            "there is nothing measured to compare. Next: choose a longer window, or come "
            "back after a few generations."
        }
    duty = duty_cycles([gpu.name], since=since, now=now)[gpu.name]
    result = break_even(
        profile.economics,
        electricity_per_image=per_image,
        busy_seconds_per_image=busy,
        cloud_per_image=float(str(data["cloud_price"])),
    )
    currency = profile.economics.currency
    return {
        "result": result,
        "figures": figures,
        "measured": duty,
        "currency": currency,
        "simulated": profile.simulated,
        "local_now": result.local_per_image(duty.share) if duty.share > 0 else None,
        "local_off_chart": duty.share > 0
        and result.local_per_image(duty.share)
        > break_even_chart(result, duty.share, currency=currency).y_max,
        "charts": [
            ("wide", break_even_chart(result, duty.share or None, currency=currency)),
            (
                "narrow",
                break_even_chart(
                    result,
                    duty.share or None,
                    currency=currency,
                    width=NARROW_WIDTH,
                    height=NARROW_HEIGHT,
                ),
            ),
        ],
    }


def whatif(request: HttpRequest) -> HttpResponse:
    """Replay the recorded jobs on another setup and compare with what happened (staff)."""
    user = user_of(request)
    if not user.is_staff:
        raise Http404("No such page.")
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    profiles = list(HardwareProfile.objects.order_by("name").values_list("name", flat=True))
    # The default GPU's active profile first: "what if we had two of what we have?"
    current = (
        Gpu.objects.filter(name=settings.ARTCRITIC_GPU)
        .values_list("active_profile__name", flat=True)
        .first()
    )
    form = WhatIfForm(request.GET or None, profiles=profiles, initial={"profile": current})
    context: dict[str, object] = {"form": form, "profiles": profiles}
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            result = whatif_run(
                days=data["days"], profile=data["profile"], gpus=data["gpus"], roles=data["roles"]
            )
        except WhatIfRefused as exc:
            context["problem"] = str(exc)
        else:
            context["result"] = result
            context["rows"] = comparison_rows(result.actual, result.predicted)
    return render(request, "staff/whatif.html", context)
