"""Hardware profiles (JSON checked by the profile schema), GPUs and runtime states."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from artcritic.audit.services import audit_record
from artcritic.gpu.models import GPU_NAME, Gpu, HardwareProfile, RuntimeState
from artcritic.gpu.profiles import Profile, ProfileError, profile_from_data
from artcritic.jobs.profile_switch import ActivationRefused, gpu_activate, gpu_activation_check
from artcritic.staff.admin.base import ReadOnlyAdmin


def duration_short(seconds: float) -> str:
    """Elapsed time as a status line says it: '40 s', '1 m 40 s', '2 h 5 m', '3 d 4 h'."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} m {secs} s" if secs else f"{minutes} m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} m" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


class PrettyJSONField(forms.JSONField):
    """A JSON textarea that shows the profile indented, so a person can edit it."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


class HardwareProfileForm(forms.ModelForm):
    class Meta:
        model = HardwareProfile
        fields = ("name", "data")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # ``data`` is also BaseForm's bound-data attribute, so the field is swapped in here.
        self.fields["data"] = PrettyJSONField(
            help_text="The profile as JSON, checked against the same schema as profiles/*.toml.",
            widget=forms.Textarea(attrs={"rows": 40, "cols": 100, "spellcheck": "false"}),
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        data = cleaned.get("data")
        if "data" in self.errors or data is None:
            return cleaned
        if not isinstance(data, dict):
            self.add_error("data", "A profile is a JSON object ({…}), not a list or a value.")
            return cleaned
        try:
            profile: Profile = profile_from_data(data)
        except ProfileError as exc:
            self.add_error("data", str(exc))
            return cleaned
        name = cleaned.get("name")
        if name and profile.name != name:
            self.add_error(
                "data", f"name inside the profile ({profile.name!r}) must equal the name {name!r}."
            )
            return cleaned
        # Store it as the loader would: normalised, with defaults filled in.
        cleaned["data"] = profile.model_dump(mode="json")
        self.instance.simulated = profile.simulated
        self.instance.description = profile.description
        return cleaned


@admin.register(HardwareProfile)
class HardwareProfileAdmin(admin.ModelAdmin):
    form = HardwareProfileForm
    list_display = ("name", "simulated", "gpu_count", "description", "source_path", "updated_at")
    list_filter = ("simulated",)
    search_fields = ("name", "description")
    readonly_fields = (
        "simulated",
        "description",
        "source_path",
        "source_sha256",
        "loaded_at",
        "updated_at",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[HardwareProfile]:
        return super().get_queryset(request).annotate(gpu_total=Count("gpus"))

    @admin.display(description="GPUs using it", ordering="gpu_total")
    def gpu_count(self, profile: HardwareProfile) -> int:
        return int(getattr(profile, "gpu_total", 0))

    def save_model(
        self,
        request: HttpRequest,
        obj: HardwareProfile,
        form: ModelForm[HardwareProfile],
        change: bool,
    ) -> None:
        super().save_model(request, obj, form, change)
        audit_record(
            "profile.edited" if change else "profile.created",
            f"{request.user} {'edited' if change else 'created'} hardware profile {obj.name} "
            "in the admin",
            actor=request.user,
            data={"profile": obj.name, "fields": list(form.changed_data)},
        )


class GpuForm(forms.ModelForm):
    confirm_hardware_change = forms.BooleanField(
        required=False,
        label="I understand this switches between simulated and real hardware",
        help_text="Needed only when the new profile is simulated and the current one is real "
        "hardware, or the reverse.",
    )

    class Meta:
        model = Gpu
        fields = ("name", "active_profile", "nvml_index")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        row: HardwareProfile | None = cleaned.get("active_profile")
        if row is None or not self.instance.pk or self.instance.active_profile_id == row.pk:
            return cleaned
        before = self.instance.active_profile
        if before.simulated == row.simulated or cleaned.get("confirm_hardware_change"):
            return cleaned
        self.add_error("confirm_hardware_change", hardware_change_warning(self.instance, row))
        return cleaned

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        if not GPU_NAME.fullmatch(name):
            raise forms.ValidationError(
                "Use 1-64 lower-case letters, digits, '-' or '_' (it names the queue gpu.<name>)."
            )
        return name

    def clean_active_profile(self) -> HardwareProfile:
        row: HardwareProfile = self.cleaned_data["active_profile"]
        try:
            profile = profile_from_data(row.data)
        except ProfileError as exc:
            raise forms.ValidationError(f"Profile {row.name} is not valid: {exc}") from None
        if self.instance.pk and self.instance.active_profile_id != row.pk:
            blockers = gpu_activation_check(self.instance, profile)
            if blockers:
                job_ids = sorted({pk for blocker in blockers for pk in blocker.job_ids})
                queue = reverse("admin:jobs_job_changelist")
                query = urlencode({"id__in": ",".join(map(str, job_ids))})
                raise forms.ValidationError(
                    format_html(
                        "GPU {} cannot switch to {} now: {}. "
                        '<a href="{}?{}">Open these {} job(s) in the queue</a> to cancel them, '
                        "or wait for them to finish.",
                        self.instance.name,
                        row.name,
                        "; ".join(blocker.reason for blocker in blockers),
                        queue,
                        query,
                        len(job_ids),
                    )
                )
        return row


def hardware_change_warning(gpu: Gpu, row: HardwareProfile) -> str:
    """What switching a GPU between simulated and real hardware means, before it happens."""
    before = gpu.active_profile
    if before.simulated:
        return (
            f"GPU {gpu.name} now runs SIMULATED runtimes (profile {before.name}); profile "
            f"{row.name} drives REAL hardware: the next designer job on {gpu.name} will start "
            "real ComfyUI and vLLM runtimes through its driver (the Docker socket or real "
            "processes) and read a real NVIDIA GPU through NVML. On a machine without them every "
            "job fails until the profile is switched back. Tick the box to switch anyway."
        )
    return (
        f"GPU {gpu.name} now drives REAL hardware (profile {before.name}); profile {row.name} "
        "is SIMULATED: its images are drawings and its memory and power readings are made up, "
        "while designers' pages keep working as if it were real. Tick the box to switch anyway."
    )


class RuntimeStateInline(admin.TabularInline):
    """What each runtime on this GPU is doing (written by the GPU worker, never here)."""

    model = RuntimeState
    fields = (
        "runtime",
        "status",
        "since",
        "version",
        "profile_name",
        "simulated",
        "fingerprint_short",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="since")
    def since(self, state: RuntimeState) -> str:
        return _since(state)

    @admin.display(description="fingerprint")
    def fingerprint_short(self, state: RuntimeState) -> str:
        return state.fingerprint[:12] or "—"


def _since(state: RuntimeState) -> str:
    elapsed = (timezone.now() - state.status_since).total_seconds()
    return f"{duration_short(elapsed)} ago"


@admin.register(Gpu)
class GpuAdmin(admin.ModelAdmin):
    form = GpuForm
    list_display = ("name", "active_profile", "simulated", "queue", "nvml_index", "updated_at")
    list_filter = ("active_profile__simulated",)
    search_fields = ("name", "active_profile__name")
    list_select_related = ("active_profile",)
    inlines = (RuntimeStateInline,)

    def get_readonly_fields(self, request: HttpRequest, obj: Gpu | None = None) -> tuple[str, ...]:
        # A rename would orphan the worker's queue gpu.<name>; a new GPU is a new row.
        return ("name", "updated_at") if obj is not None else ("updated_at",)

    @admin.display(boolean=True, description="simulated")
    def simulated(self, gpu: Gpu) -> bool:
        return gpu.active_profile.simulated

    def save_model(
        self, request: HttpRequest, obj: Gpu, form: ModelForm[Gpu], change: bool
    ) -> None:
        try:
            saved = gpu_activate(obj.name, obj.active_profile.name, actor=request.user)
        except (ActivationRefused, ProfileError) as exc:
            # The form checked this a moment ago; something changed since, so say so plainly.
            self.message_user(request, f"Not activated: {exc}", level="error")
            return
        if saved.nvml_index != obj.nvml_index:
            Gpu.objects.filter(pk=saved.pk).update(nvml_index=obj.nvml_index)
        obj.pk = saved.pk

    def response_change(self, request: HttpRequest, obj: Gpu) -> HttpResponse:
        if not Gpu.objects.filter(pk=obj.pk, active_profile_id=obj.active_profile_id).exists():
            # save_model said why the switch was refused; no "changed successfully" after it.
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)


@admin.register(RuntimeState)
class RuntimeStateAdmin(ReadOnlyAdmin):
    list_display = (
        "gpu",
        "runtime",
        "status",
        "since",
        "version",
        "profile_name",
        "simulated",
        "fingerprint_short",
        "detail_short",
    )
    list_filter = ("gpu", "runtime", "status", "simulated", "version")
    search_fields = ("gpu__name", "profile_name", "detail")
    list_select_related = ("gpu",)

    @admin.display(description="since", ordering="status_since")
    def since(self, state: RuntimeState) -> str:
        return _since(state)

    @admin.display(description="fingerprint", ordering="fingerprint")
    def fingerprint_short(self, state: RuntimeState) -> str:
        return state.fingerprint[:12] or "—"

    @admin.display(description="detail")
    def detail_short(self, state: RuntimeState) -> str:
        text = state.detail
        return text if len(text) <= 90 else f"{text[:89]}…"
