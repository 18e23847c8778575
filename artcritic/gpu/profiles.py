"""Hardware profiles: the schema of ``profiles/*.toml`` and its strict loader.

A profile says what can run together on one GPU, how much VRAM each runtime may
take, the limits a request must respect, how each runtime is started and
released, and how long each phase usually takes (for ETAs). Unknown keys, wrong
types and impossible numbers are errors naming the file and the key.
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

GB = 1_000_000_000  # profiles speak decimal gigabytes, as GPU vendors and model cards do
GiB = 1024**3

RuntimeKey = Literal["comfyui", "critic"]
Dtype = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4"]
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4,
    "bf16": 2,
    "fp16": 2,
    "fp8": 1,
    "int8": 1,
    "int4": 0.5,
}

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
PositiveGB = Annotated[float, Field(gt=0, le=4096)]
NonNegGB = Annotated[float, Field(ge=0, le=4096)]
Seconds = Annotated[float, Field(ge=0, le=86_400)]


# A dedicated role and the one runtime it runs.
ROLE_RUNTIME: dict[str, str] = {"artist": "comfyui", "critic": "critic"}


class ProfileError(Exception):
    """A profile file is unreadable or invalid; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class Component(_Strict):
    """One weight file of a diffusion model (transformer/UNet, text encoder, VAE)."""

    role: Literal["transformer", "unet", "text_encoder", "vae", "checkpoint"]
    file: Annotated[str, Field(min_length=1, max_length=255)]
    params_billion: Annotated[float, Field(gt=0, le=2000)]
    dtype: Dtype
    # Text encoders that the workflow unloads after encoding still count at their peak.
    unloaded_after_encode: bool = False

    @property
    def weight_bytes(self) -> int:
        return round(self.params_billion * 1e9 * DTYPE_BYTES[self.dtype])


class DiffusionModel(_Strict):
    """A model mode a designer can choose (e.g. FLUX.1-dev fp8)."""

    label: Annotated[str, Field(min_length=1, max_length=120)]
    family: Literal["flux", "sdxl"]
    workflow: Annotated[str, Field(pattern=r"^[a-z0-9_-]+\.json$")]
    weight_dtype: Literal["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"] = "default"
    components: Annotated[list[Component], Field(min_length=1, max_length=8)]
    # Activation memory: base + per megapixel of latent output, times the batch.
    activation_base_gb: NonNegGB
    activation_gb_per_megapixel: NonNegGB
    default_steps: Annotated[int, Field(ge=1, le=200)]
    default_cfg: Annotated[float, Field(ge=0, le=30)]
    default_sampler: Annotated[str, Field(min_length=1, max_length=32)]
    default_scheduler: Annotated[str, Field(min_length=1, max_length=32)]
    seconds_per_step_megapixel: Annotated[float, Field(gt=0, le=600)]


class Lora(_Strict):
    file: Annotated[str, Field(min_length=1, max_length=200)]
    size_gb: PositiveGB
    families: Annotated[list[Literal["flux", "sdxl"]], Field(min_length=1)]


class CriticModel(_Strict):
    """The Critic's model card numbers that size its VRAM."""

    model: Annotated[str, Field(min_length=1, max_length=200)]
    label: Annotated[str, Field(min_length=1, max_length=120)]
    weights_gb: PositiveGB
    vision_encoder_gb: NonNegGB
    layers: Annotated[int, Field(ge=1, le=1000)]
    kv_heads: Annotated[int, Field(ge=1, le=1024)]
    head_dim: Annotated[int, Field(ge=1, le=4096)]
    kv_dtype: Dtype
    activation_gb: NonNegGB = 1.0
    max_position_embeddings: Annotated[int, Field(ge=256, le=10_000_000)]
    image_tokens_per_megapixel: Annotated[int, Field(ge=1, le=100_000)]


class ComfyRuntime(_Strict):
    driver: Literal["docker", "process", "external"]
    url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(:\d+)?/?$")]
    release: Literal["free", "stop"]
    image: str = ""
    command: list[str] = Field(default_factory=list)
    container_name: str = ""
    health_path: str = "/system_stats"
    start_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 300
    release_timeout_s: Annotated[float, Field(gt=0, le=600)] = 60
    request_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30
    # A run's deadline: three times its expected load, warm-up and sampling, plus this slack.
    # Past it the prompt is interrupted; if it keeps running, ComfyUI is hung and recreated.
    run_grace_s: Annotated[float, Field(gt=0, le=3600)] = 120

    @model_validator(mode="after")
    def _driver_needs(self) -> Self:
        _check_driver(self)
        return self


class CriticRuntime(_Strict):
    driver: Literal["docker", "process", "external"]
    url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(:\d+)?/?$")]
    release: Literal["sleep1", "sleep2", "stop"]
    image: str = ""
    command: list[str] = Field(default_factory=list)
    container_name: str = ""
    health_path: str = "/health"
    served_model_name: str = ""
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=0.99)]
    max_model_len: Annotated[int, Field(ge=256, le=10_000_000)]
    max_num_seqs: Annotated[int, Field(ge=1, le=4096)]
    enable_chunked_prefill: bool = True
    enforce_eager: bool = False
    start_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 600
    release_timeout_s: Annotated[float, Field(gt=0, le=600)] = 60
    request_timeout_s: Annotated[float, Field(gt=0, le=600)] = 120

    @model_validator(mode="after")
    def _driver_needs(self) -> Self:
        _check_driver(self)
        return self


def _check_driver(runtime: ComfyRuntime | CriticRuntime) -> None:
    if runtime.driver == "docker" and not runtime.image:
        raise ValueError("driver 'docker' needs an image")
    if runtime.driver == "process" and not runtime.command:
        raise ValueError("driver 'process' needs a command")


class Runtimes(_Strict):
    comfyui: ComfyRuntime
    critic: CriticRuntime


class Limits(_Strict):
    """What a request may ask for on this profile; outside it is refused, never adjusted."""

    model_modes: Annotated[list[Slug], Field(min_length=1)]
    max_batch: Annotated[int, Field(ge=1, le=64)]
    max_width: Annotated[int, Field(ge=64, le=8192, multiple_of=8)]
    max_height: Annotated[int, Field(ge=64, le=8192, multiple_of=8)]
    min_size: Annotated[int, Field(ge=64, le=8192, multiple_of=8)] = 256
    max_steps: Annotated[int, Field(ge=1, le=200)]
    max_cfg: Annotated[float, Field(gt=0, le=30)] = 30.0
    samplers: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=32)]], Field(min_length=1)
    ]
    schedulers: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=32)]], Field(min_length=1)
    ]
    max_lora_strength: Annotated[float, Field(gt=0, le=100)] = 2.0
    critic_max_context: Annotated[int, Field(ge=256, le=10_000_000)]
    prior_decisions_shown: Annotated[int, Field(ge=0, le=32)] = 6
    # m: how many of those k examples also go to the Critic as thumbnails (vision tokens).
    prior_thumbnails_shown: Annotated[int, Field(ge=0, le=8)] = 4

    @model_validator(mode="after")
    def _thumbnails_within_decisions(self) -> Self:
        if self.prior_thumbnails_shown > self.prior_decisions_shown:
            raise ValueError(
                f"prior_thumbnails_shown ({self.prior_thumbnails_shown}) cannot exceed "
                f"prior_decisions_shown ({self.prior_decisions_shown}): a thumbnail belongs to "
                "a decision shown"
            )
        return self


class Durations(_Strict):
    """Expected seconds per phase, for ETAs and the scheduling benchmark."""

    comfyui_start: Seconds
    comfyui_load: Seconds
    comfyui_warm: Seconds
    comfyui_free: Seconds
    critic_start: Seconds
    critic_load: Seconds
    critic_warm: Seconds
    critic_sleep: Seconds
    critic_wake: Seconds
    critic_stop: Seconds
    critic_review: Seconds
    upload_per_image: Seconds = 0.2


ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
PricePerKwh = Annotated[float, Field(ge=0, le=100)]


def minutes_of(clock: str) -> int:
    """'07:30' → 450: minutes after local midnight."""
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class TariffWindow(_Strict):
    """A time-of-use price from ``start`` to ``end`` local time; it may wrap past midnight."""

    start: ClockTime
    end: ClockTime
    price_per_kwh: PricePerKwh

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.start == self.end:
            raise ValueError(f"window {self.start}-{self.end} is empty: start must differ from end")
        return self

    def covers(self, minute: int) -> bool:
        """Whether ``minute`` after local midnight falls in the window (start in, end out)."""
        start, end = minutes_of(self.start), minutes_of(self.end)
        if start < end:
            return start <= minute < end
        return minute >= start or minute < end


class Economics(_Strict):
    """What running this GPU costs: electricity, the card's price over its life, the host."""

    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    # The price outside every time-of-use window.
    price_per_kwh: PricePerKwh
    time_of_use: Annotated[list[TariffWindow], Field(max_length=24)] = Field(default_factory=list)
    # The tariff's clock (IANA name): windows are local times there.
    timezone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"
    card_price: Annotated[float, Field(ge=0, le=10_000_000)]
    # Hours over which the card's price is written off (3 years of wall-clock time: 26280).
    amortisation_hours: Annotated[float, Field(gt=0, le=1_000_000)]
    # The host's own draw (CPU, RAM, fans, PSU losses) besides the GPU, always on.
    host_idle_watts: Annotated[float, Field(ge=0, le=100_000)]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"timezone {self.timezone!r} is not an IANA time zone (e.g. Europe/Berlin)"
            ) from None
        # Two windows that overlap share the minute the later of them starts (or midnight,
        # where a window wraps), so those minutes are the only ones worth checking.
        starts = sorted({0, *(minutes_of(window.start) for window in self.time_of_use)})
        for minute in starts:
            covering = [w for w in self.time_of_use if w.covers(minute)]
            if len(covering) > 1:
                first, second = covering[0], covering[1]
                raise ValueError(
                    f"time_of_use windows {first.start}-{first.end} and "
                    f"{second.start}-{second.end} overlap"
                )
        return self


class Profile(_Strict):
    name: Slug
    description: Annotated[str, Field(max_length=2000)] = ""
    simulated: bool = False
    vram_total_gb: PositiveGB
    reserve_gb: NonNegGB
    host_ram_gb: PositiveGB
    # Groups of runtimes that must never be resident in VRAM at the same time.
    exclusive: list[list[RuntimeKey]] = Field(default_factory=list)
    # What this GPU runs: both runtimes ("shared", swapping when they are exclusive), or only
    # one of them ("artist": ComfyUI, "critic": the Critic) so that it never swaps; jobs for
    # the other runtime are placed on another GPU (artcritic.jobs.placement).
    role: Literal["shared", "artist", "critic"] = "shared"
    verify_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30
    limits: Limits
    models: Annotated[dict[Slug, DiffusionModel], Field(min_length=1)]
    loras: dict[Slug, Lora] = Field(default_factory=dict)
    critic: CriticModel
    runtimes: Runtimes
    durations: Durations
    # Optional: without it, pages say that costs are not configured (never a made-up price).
    economics: Economics | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.reserve_gb >= self.vram_total_gb:
            raise ValueError(
                f"reserve_gb ({self.reserve_gb}) must be below vram_total_gb ({self.vram_total_gb})"
            )
        unknown = [m for m in self.limits.model_modes if m not in self.models]
        if unknown:
            raise ValueError(f"limits.model_modes names models not in [models]: {unknown}")
        for group in self.exclusive:
            if len(set(group)) != len(group) or len(group) < 2:
                raise ValueError(
                    f"exclusive group {group} must name at least two distinct runtimes"
                )
        if self.runtimes.critic.max_model_len > self.limits.critic_max_context:
            raise ValueError(
                "runtimes.critic.max_model_len exceeds the safe limits.critic_max_context "
                f"({self.runtimes.critic.max_model_len} > {self.limits.critic_max_context})"
            )
        if self.runtimes.critic.max_model_len > self.critic.max_position_embeddings:
            raise ValueError(
                "runtimes.critic.max_model_len exceeds the model's max_position_embeddings"
            )
        return self

    @property
    def usable_bytes(self) -> int:
        return round((self.vram_total_gb - self.reserve_gb) * GB)

    @property
    def total_bytes(self) -> int:
        return round(self.vram_total_gb * GB)

    def are_exclusive(self, a: str, b: str) -> bool:
        return any(a in group and b in group for group in self.exclusive)

    def runs(self, runtime: str) -> bool:
        """Whether this profile's role lets its GPU run ``runtime`` at all."""
        return self.role == "shared" or ROLE_RUNTIME[self.role] == runtime

    def model_mode_choices(self) -> list[tuple[str, str]]:
        return [(key, self.models[key].label) for key in self.limits.model_modes]


def _format_errors(path: str, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{path}: {key}: {item['msg']}")
    return "\n".join(lines)


def profile_parse(text: str, *, source: str) -> Profile:
    """Parse and validate one profile's TOML text; raise ProfileError naming source and key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{source}: not valid TOML: {exc}") from None
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(_format_errors(source, exc)) from None


def profile_read(path: Path) -> tuple[Profile, str]:
    """Read a profile file; return the profile and the file's sha256."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: is not UTF-8 text") from None
    profile = profile_parse(text, source=str(path))
    if profile.name != path.stem:
        raise ProfileError(f"{path}: name: {profile.name!r} must match the file name {path.stem!r}")
    return profile, hashlib.sha256(data).hexdigest()


def profile_from_data(data: dict[str, object]) -> Profile:
    """Rebuild a profile from the JSON stored in the database (already validated once)."""
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(_format_errors("stored profile", exc)) from None
