"""Hardware profiles, GPUs with their active profile, and per-runtime state."""

from __future__ import annotations

import re

from django.db import models
from django.db.models import Q


class RuntimeName(models.TextChoices):
    COMFYUI = "comfyui", "ComfyUI (Artist)"
    CRITIC = "critic", "Critic (vLLM)"


class RuntimeStatus(models.TextChoices):
    STOPPED = "stopped", "Stopped"
    STARTING = "starting", "Starting"
    LOADING = "loading", "Loading weights"
    WARMING = "warming", "Warming up"
    READY = "ready", "Ready"
    BUSY = "busy", "Busy"
    RELEASING = "releasing", "Releasing VRAM"
    SLEEPING = "sleeping", "Sleeping"
    UNHEALTHY = "unhealthy", "Unhealthy"


class HardwareProfile(models.Model):
    """A validated profile file; ``data`` is the parsed TOML, checked by the loader."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    data = models.JSONField()
    source_path = models.CharField(max_length=500, blank=True)
    source_sha256 = models.CharField(max_length=64, blank=True)
    simulated = models.BooleanField(default=False)
    loaded_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


# A GPU's name names its Celery queue (gpu.<name>), its runtime containers and its pages.
GPU_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class Gpu(models.Model):
    """One GPU served by one ``gpu.<name>`` worker; exactly one active profile by construction."""

    name = models.SlugField(max_length=64, unique=True)
    active_profile = models.ForeignKey(
        HardwareProfile, on_delete=models.PROTECT, related_name="gpus"
    )
    nvml_index = models.PositiveSmallIntegerField(default=0)
    # The GPU worker's latest NVML reading (artcritic.gpu.readings), or why there is none.
    reading = models.JSONField(default=dict, blank=True)
    reading_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "GPU"

    def __str__(self) -> str:
        return self.name

    @property
    def queue(self) -> str:
        return f"gpu.{self.name}"


class RuntimeState(models.Model):
    gpu = models.ForeignKey(Gpu, on_delete=models.CASCADE, related_name="runtimes")
    runtime = models.CharField(max_length=16, choices=RuntimeName.choices)
    status = models.CharField(
        max_length=16, choices=RuntimeStatus.choices, default=RuntimeStatus.STOPPED
    )
    status_since = models.DateTimeField()
    profile_name = models.CharField(max_length=64, blank=True)
    fingerprint = models.CharField(
        max_length=64, blank=True, help_text="Hash of the settings it was started with."
    )
    driver = models.CharField(max_length=16, blank=True)
    endpoint = models.CharField(max_length=255, blank=True)
    simulated = models.BooleanField(default=False)
    version = models.CharField(
        max_length=80, blank=True, help_text="Read from the runtime when it became ready."
    )
    detail = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["gpu__name", "runtime"]
        constraints = [
            models.UniqueConstraint(fields=["gpu", "runtime"], name="runtime_state_once_per_gpu"),
            models.CheckConstraint(
                condition=Q(runtime__in=RuntimeName.values), name="runtime_name_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=RuntimeStatus.values), name="runtime_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.runtime} on {self.gpu.name}: {self.status}"
