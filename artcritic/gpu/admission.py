"""Admission: a request is checked against the active profile before any work starts.

Anything outside the profile's limits, or that does not fit its VRAM, is refused with
the numbers and what the user can change — never adjusted (DESIGN principle 2). Pure:
profile and plain values in, an ``Admission`` out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol

from artcritic.gpu.budget import (
    KV_BLOCK_TOKENS,
    CriticNeed,
    VramNeed,
    comfy_budget_bytes,
    critic_need,
    diffusion_need,
    explain_claim,
    explain_comfy_budget,
    explain_kv,
    explain_need,
    explain_usable,
    gb,
    megapixels,
    runtimes_exclusive,
    usable_bytes,
)
from artcritic.gpu.profiles import GB, Profile

SEED_POLICIES = ("fixed", "increment", "random")
MAX_GPU_MEMORY_UTILIZATION = 0.99  # the profile schema's ceiling
MIN_USEFUL_CONTEXT = 2048  # tokens: one image (≈ 1.3k) plus brief, prompt and prior decisions
SIZE_MULTIPLE = 8  # latent space is 1/8 of the image; ComfyUI needs whole latent pixels
# The composer's fields in form order, as ``Admission.fields`` names them.
FORM_FIELDS = (
    "model_mode",
    "width",
    "height",
    "steps",
    "cfg",
    "sampler",
    "scheduler",
    "lora",
    "lora_strength",
    "seed_policy",
    "count",
)
# Admission's names for the checks it makes, as composer fields.
_CHECK_FIELDS = {
    "seed policy": "seed_policy",
    "count": "count",
    "step count": "steps",
    "cfg": "cfg",
    "sampler": "sampler",
    "scheduler": "scheduler",
    "LoRA strength": "lora_strength",
}


@dataclass(frozen=True)
class RequestSettings:
    """The settings of a generation request, exactly as submitted."""

    model_mode: str
    width: int
    height: int
    steps: int
    cfg: float
    sampler: str
    scheduler: str
    lora: str | None
    lora_strength: float
    seed_policy: str
    count: int


class RequestFields(Protocol):
    """A stored generation request or a composer draft: the fields admission reads."""

    @property
    def model_mode(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def steps(self) -> int: ...
    @property
    def cfg(self) -> float: ...
    @property
    def sampler(self) -> str: ...
    @property
    def scheduler(self) -> str: ...
    @property
    def lora_name(self) -> str: ...
    @property
    def lora_strength(self) -> float: ...
    @property
    def seed_policy(self) -> str: ...
    @property
    def count(self) -> int: ...


def request_settings(request: RequestFields) -> RequestSettings:
    """A request's (or a draft's) values as admission reads them; no LoRA is None."""
    return RequestSettings(
        model_mode=request.model_mode,
        width=request.width,
        height=request.height,
        steps=request.steps,
        cfg=request.cfg,
        sampler=request.sampler,
        scheduler=request.scheduler,
        lora=request.lora_name or None,
        lora_strength=request.lora_strength,
        seed_policy=str(request.seed_policy),
        count=request.count,
    )


@dataclass(frozen=True)
class Admission:
    """The verdict: ok, or refused with a reason (numbers) and the user's next action."""

    ok: bool
    reason: str
    next_action: str
    # What must be free on the GPU for this job (for a review: vLLM's whole claim).
    need_bytes: int
    # What the profile lets this runtime use.
    usable_bytes: int
    checks: tuple[str, ...]
    # The composer fields the refusal names (what the designer could change), in form order.
    fields: tuple[str, ...] = ()


class AdmissionRefused(Exception):
    """A request the active profile refuses; carries the reason and the next action."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.reason = admission.reason
        self.next_action = admission.next_action
        super().__init__(admission.reason)


@dataclass(frozen=True)
class _Problem:
    reason: str  # a sentence, with numbers
    action: str  # an imperative clause naming what the user (or an admin) can change
    fields: tuple[str, ...] = ()  # the composer fields that clause is about


def batch_for(settings: RequestSettings) -> int:
    """How many images one ComfyUI prompt renders at once for this request."""
    # ComfyUI draws a batch's noise from ONE seed, so only the "fixed" policy can render
    # its images as one batch; "increment" and "random" record a distinct seed per image,
    # which means one prompt per image, each of batch 1 (and so only one image's
    # activations in VRAM at a time).
    if settings.seed_policy == "fixed":
        return settings.count
    if settings.seed_policy in SEED_POLICIES:
        return 1
    raise ValueError(f"unknown seed policy {settings.seed_policy!r}")


def _or_words(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


class _Findings:
    """Collects one line per check and, for each refusal, the reason and the user's action."""

    def __init__(self) -> None:
        self.problems: list[_Problem] = []
        self.checks: list[str] = []

    def passed(self, check: str, detail: str) -> None:
        """Record a check the request meets."""
        self.checks.append(f"{check}: ok — {detail}")

    def refused(
        self, check: str, detail: str, *, reason: str, action: str, fields: tuple[str, ...] = ()
    ) -> None:
        """Record a check the request fails, with the sentence and the user's next action."""
        self.checks.append(f"{check}: refused — {detail}")
        self.problems.append(_Problem(reason, action, fields))

    def admission(self, *, reason: str, need: int, usable: int) -> Admission:
        """Admitted with ``reason`` when nothing was refused; else every refusal, in order."""
        if not self.problems:
            return Admission(True, reason, "", need, usable, tuple(self.checks))
        it = "it" if len(self.problems) == 1 else "them"
        clauses = "; ".join(problem.action for problem in self.problems)
        named = {name for problem in self.problems for name in problem.fields}
        # Pages print "Next:" before it; the action itself is a sentence of its own.
        return Admission(
            ok=False,
            reason=" ".join(problem.reason for problem in self.problems),
            next_action=f"{clauses[:1].upper()}{clauses[1:]} — the system will not change {it} "
            "for you.",
            need_bytes=need,
            usable_bytes=usable,
            checks=tuple(self.checks),
            fields=tuple(name for name in FORM_FIELDS if name in named),
        )


def _multiples_near(value: int, low: int, high: int) -> list[int]:
    down = value // SIZE_MULTIPLE * SIZE_MULTIPLE
    return [n for n in (down, down + SIZE_MULTIPLE) if low <= n <= high]


def _check_side(found: _Findings, profile: Profile, side: str, value: int, high: int) -> None:
    low = profile.limits.min_size
    if not low <= value <= high:
        found.refused(
            side,
            f"{value} px is outside {low}–{high} px",
            reason=f"A {side} of {value} px is outside what profile {profile.name} allows "
            f"({low}–{high} px).",
            action=f"choose a {side} from {low} to {high} px",
            fields=(side,),
        )
    elif value % SIZE_MULTIPLE:
        near = " or ".join(str(n) for n in _multiples_near(value, low, high))
        found.refused(
            side,
            f"{value} px is not a multiple of {SIZE_MULTIPLE}",
            reason=f"A {side} of {value} px is not a multiple of {SIZE_MULTIPLE}.",
            action=f"choose a {side} that is a multiple of {SIZE_MULTIPLE} (e.g. {near})",
            fields=(side,),
        )
    else:
        found.passed(side, f"{value} px within {low}–{high} px")


def _num(value: float) -> str:
    """A number as a person writes it: no trailing zeros, a real minus sign."""
    return f"{value:g}".replace("-", "−")


def _check_range(
    found: _Findings, profile: Profile, noun: str, value: float, span: tuple[float, float]
) -> None:
    """``value`` must lie in ``span`` (inclusive); NaN and infinities never do."""
    low, high = span
    allowed = f"{_num(low)} to {_num(high)}"
    if math.isfinite(value) and low <= value <= high:
        found.passed(noun, f"{_num(value)}, allowed {allowed}")
        return
    found.refused(
        noun,
        f"{_num(value)}, allowed {allowed}",
        reason=f"A {noun} of {_num(value)} is outside what profile {profile.name} allows "
        f"({allowed}).",
        action=f"choose a {noun} from {allowed}",
        fields=(_CHECK_FIELDS[noun],) if noun in _CHECK_FIELDS else (),
    )


def _check_choice(
    found: _Findings, profile: Profile, check: str, value: str, allowed: list[str]
) -> None:
    if value in allowed:
        found.passed(check, value)
        return
    found.refused(
        check,
        f"{value!r} is not available",
        reason=f"The {check} {value!r} is not available on profile {profile.name}.",
        action=f"choose the {_or_words(allowed)} {check}",
        fields=(_CHECK_FIELDS[check],) if check in _CHECK_FIELDS else (),
    )


def _check_limits(found: _Findings, profile: Profile, s: RequestSettings) -> None:
    """Every limit except VRAM; each violation is refused, never adjusted."""
    limits = profile.limits
    _check_choice(found, profile, "seed policy", s.seed_policy, list(SEED_POLICIES))
    if s.model_mode in limits.model_modes:
        found.passed("model mode", f"{s.model_mode} is allowed on {profile.name}")
    else:
        labels = _or_words([profile.models[m].label for m in limits.model_modes])
        found.refused(
            "model mode",
            f"{s.model_mode!r} is not allowed on {profile.name}",
            reason=f"The model mode {s.model_mode!r} is not allowed on profile {profile.name}.",
            action=f"choose the {labels} model mode",
            fields=("model_mode",),
        )
    _check_side(found, profile, "width", s.width, limits.max_width)
    _check_side(found, profile, "height", s.height, limits.max_height)
    _check_range(found, profile, "count", s.count, (1, limits.max_batch))
    _check_range(found, profile, "step count", s.steps, (1, limits.max_steps))
    _check_range(found, profile, "cfg", s.cfg, (0, limits.max_cfg))
    _check_choice(found, profile, "sampler", s.sampler, limits.samplers)
    _check_choice(found, profile, "scheduler", s.scheduler, limits.schedulers)
    _check_lora(found, profile, s)


def _check_lora(found: _Findings, profile: Profile, s: RequestSettings) -> None:
    if s.lora is None:
        found.passed("LoRA", "none")
        return
    lora = profile.loras.get(s.lora)
    model = profile.models.get(s.model_mode)
    if lora is None:
        known = sorted(profile.loras)
        found.refused(
            "LoRA",
            f"{s.lora!r} is unknown",
            reason=f"The LoRA {s.lora!r} is not on profile {profile.name}.",
            action=f"choose the {_or_words(known)} LoRA or none" if known else "choose no LoRA",
            fields=("lora",),
        )
        return
    if model is not None and model.family not in lora.families:
        fitting = sorted(k for k, v in profile.loras.items() if model.family in v.families)
        families = _or_words(list(lora.families))
        instead = f"the {_or_words(fitting)} LoRA, " if fitting else ""
        found.refused(
            "LoRA",
            f"{s.lora!r} does not fit the {model.family} family",
            reason=f"The LoRA {s.lora!r} is made for {families} models, not for "
            f"{model.label} ({model.family}).",
            action=f"choose {instead}no LoRA, or a {families} model mode",
            fields=("lora", "model_mode"),
        )
        return
    found.passed("LoRA", f"{s.lora} is made for {_or_words(list(lora.families))} models")
    limit = profile.limits.max_lora_strength
    _check_range(found, profile, "LoRA strength", s.lora_strength, (-limit, limit))


def _need(profile: Profile, s: RequestSettings, *, model_mode: str, batch: int) -> VramNeed:
    return diffusion_need(
        profile, model_mode=model_mode, width=s.width, height=s.height, batch=batch, lora=s.lora
    )


def _vram_alternatives(profile: Profile, s: RequestSettings, budget: int) -> list[str]:
    """Concrete changes the user could make that WOULD fit, each computed, all within limits."""
    options: list[str] = []
    batch = batch_for(s)
    model = profile.models[s.model_mode]
    lora = profile.loras.get(s.lora) if s.lora else None

    modes = [m for m in profile.limits.model_modes if m != s.model_mode]
    # Same family first: the closest change to what was asked for.
    modes.sort(key=lambda m: profile.models[m].family != model.family)
    fitting_modes = [
        profile.models[m].label
        for m in modes
        if (lora is None or profile.models[m].family in lora.families)
        and _need(profile, s, model_mode=m, batch=batch).total_bytes <= budget
    ]
    if fitting_modes:
        options.append(f"the {_or_words(fitting_modes)} model mode")

    if batch > 1:
        counts = [
            c
            for c in range(1, batch)
            if _need(profile, s, model_mode=s.model_mode, batch=c).total_bytes <= budget
        ]
        if counts:
            largest = max(counts)
            options.append(f"a count of {largest} or fewer" if largest > 1 else "a count of 1")
            options.append("the increment or random seed policy (images made one at a time)")

    size = _largest_size(profile, s, budget, batch)
    if size is not None:
        options.append(f"a size of {size[0]}×{size[1]} or smaller")
    return options


def _largest_size(
    profile: Profile, s: RequestSettings, budget: int, batch: int
) -> tuple[int, int] | None:
    """The request's aspect ratio scaled down (multiples of 8) until it fits, if it can."""
    model = profile.models[s.model_mode]
    fixed = _need(profile, s, model_mode=s.model_mode, batch=0).total_bytes
    per_mp = model.activation_gb_per_megapixel * GB * batch
    if per_mp <= 0 or fixed > budget:
        return None
    # Activations grow linearly with megapixels, so the largest area that fits is direct.
    scale = math.sqrt((budget - fixed) / per_mp / megapixels(s.width, s.height))
    width = min(s.width, int(s.width * scale) // SIZE_MULTIPLE * SIZE_MULTIPLE)
    height = min(s.height, int(s.height * scale) // SIZE_MULTIPLE * SIZE_MULTIPLE)
    # Rounding and float arithmetic may leave it a few bytes over: step down until it fits.
    while width >= profile.limits.min_size and height >= profile.limits.min_size:
        trial = replace(s, width=width, height=height)
        if _need(profile, trial, model_mode=s.model_mode, batch=batch).total_bytes <= budget:
            return width, height
        width -= SIZE_MULTIPLE
        height -= SIZE_MULTIPLE
    return None


def admit_generation(profile: Profile, settings: RequestSettings) -> Admission:
    """Admit a generation request on this profile, or refuse it with the numbers."""
    s = replace(settings, lora=settings.lora or None)
    found = _Findings()
    _check_limits(found, profile, s)
    budget = comfy_budget_bytes(profile)
    computable = (
        s.model_mode in profile.limits.model_modes
        and (s.lora is None or s.lora in profile.loras)
        and s.seed_policy in SEED_POLICIES
        and s.count >= 1
        and s.width > 0
        and s.height > 0
    )
    if not computable:
        # Without a known model, LoRA, seed policy and size a VRAM figure would be invented.
        found.checks.append("VRAM: not computed — the settings above must be fixed first")
        return found.admission(reason="", need=0, usable=budget)

    batch = batch_for(s)
    need = _need(profile, s, model_mode=s.model_mode, batch=batch)
    if batch < s.count:
        label = profile.models[s.model_mode].label
        need = replace(
            need,
            subject=f"{label} at {s.width}×{s.height}, {s.count} images made one at a time "
            "(a seed each),",
        )
    sentence = f"{explain_need(need)}; {explain_comfy_budget(profile)}."
    if need.total_bytes <= budget:
        found.passed("VRAM", f"{gb(need.total_bytes)} ≤ {gb(budget)}")
    else:
        options = _vram_alternatives(profile, s, budget)
        label = profile.models[s.model_mode].label
        found.refused(
            "VRAM",
            f"{gb(need.total_bytes)} > {gb(budget)}",
            reason=sentence,
            action=f"choose {_or_words(options)}"
            if options
            else f"no setting of {label} fits profile {profile.name}: choose another model "
            "mode, or ask an admin for a profile with more VRAM",
            fields=("model_mode", "width", "height", "count")
            + (("seed_policy",) if batch > 1 else ()),
        )
    return found.admission(reason=sentence, need=need.total_bytes, usable=budget)


def admit_review(profile: Profile) -> Admission:
    """Admit a Critic review on this profile: context, KV cache vs claim, claim vs usable."""
    need = critic_need(profile)
    usable = usable_bytes(profile)
    runtime = profile.runtimes.critic
    context = profile.limits.critic_max_context
    found = _Findings()

    if runtime.max_model_len <= context:
        found.passed("context", f"max_model_len {runtime.max_model_len} ≤ {context}")
    else:
        found.refused(
            "context",
            f"max_model_len {runtime.max_model_len} > {context}",
            reason=f"The Critic is set up for {runtime.max_model_len}-token contexts "
            f"(runtimes.critic.max_model_len) but profile {profile.name} allows at most "
            f"{context} (limits.critic_max_context); the profile contradicts itself.",
            action=f"ask an admin to set runtimes.critic.max_model_len to {context} in "
            f"profile {profile.name}",
        )

    if need.fits_in_claim:
        found.passed("KV cache", f"{gb(need.total_bytes)} ≤ claim {gb(need.claim_bytes)}")
    else:
        problem = _kv_problem(profile, need, usable)
        found.refused(
            "KV cache",
            f"{gb(need.total_bytes)} > claim {gb(need.claim_bytes)}",
            reason=problem.reason,
            action=problem.action,
        )

    if need.claim_bytes <= usable:
        found.passed("claim", f"{gb(need.claim_bytes)} ≤ usable {gb(usable)}")
    else:
        most = math.floor(usable / profile.total_bytes * 100) / 100
        found.refused(
            "claim",
            f"{gb(need.claim_bytes)} > usable {gb(usable)}",
            reason=f"vLLM would claim {explain_claim(need, profile)}, more than profile "
            f"{profile.name} allows ({gb(usable)} = {explain_usable(profile)}).",
            action="ask an admin to lower runtimes.critic.gpu_memory_utilization to "
            f"{most:.2f} or less",
        )

    parked = round((profile.critic.weights_gb + profile.critic.vision_encoder_gb) * GB)
    host = round(profile.host_ram_gb * GB)
    if runtimes_exclusive(profile) and runtime.release == "sleep1" and parked > host:
        # Sleep level 1 copies the weights to host RAM; a host without room cannot park them.
        found.refused(
            "host RAM",
            f"{gb(parked)} > {gb(host)}",
            reason=f"vLLM sleep level 1 parks the Critic's {gb(parked)} of weights in host "
            f"RAM, but profile {profile.name} says the host has {gb(host)}.",
            action="ask an admin to set runtimes.critic.release to sleep2 or stop",
        )
    else:
        found.passed("host RAM", "nothing to park, or room to park it")

    sentence = (
        f"{explain_need(need)}, within what vLLM claims ({explain_claim(need, profile)}); "
        f"profile {profile.name} allows {gb(usable)} ({explain_usable(profile)})."
    )
    return found.admission(reason=sentence, need=need.claim_bytes, usable=usable)


def _kv_problem(profile: Profile, need: CriticNeed, usable: int) -> _Problem:
    """The Critic's computed need exceeds vLLM's claim: it could not even start."""
    total = profile.total_bytes
    fixed = need.total_bytes - need.kv_bytes
    tokens = math.ceil(need.max_model_len / KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS
    options: list[str] = []
    least = math.ceil(need.total_bytes / total * 100) / 100
    if least <= MAX_GPU_MEMORY_UTILIZATION and round(least * total) <= usable:
        options.append(f"raise runtimes.critic.gpu_memory_utilization to {least:.2f}")
    seqs = (need.claim_bytes - fixed) // (need.kv_bytes_per_token * tokens)
    if 1 <= seqs < need.max_num_seqs:
        options.append(f"lower runtimes.critic.max_num_seqs to {seqs}")
    length = (need.claim_bytes - fixed) // (need.kv_bytes_per_token * need.max_num_seqs)
    length = length // KV_BLOCK_TOKENS * KV_BLOCK_TOKENS
    # A shorter context always stays within limits.critic_max_context; below ~2k tokens a
    # review (one image ≈ 1.3k tokens plus brief and prior decisions) no longer fits.
    if MIN_USEFUL_CONTEXT <= length < need.max_model_len:
        options.append(f"lower runtimes.critic.max_model_len to {length}")
    if options:
        action = f"ask an admin to {_or_words(options)} in profile {profile.name}"
    else:
        action = "ask an admin for a GPU with more memory or a smaller Critic model"
    return _Problem(
        f"{explain_need(need)}: its {explain_kv(need)}, but {explain_claim(need, profile)}, "
        "so vLLM could not start.",
        action,
    )


def mode_never_fits(profile: Profile, model_mode: str) -> str:
    """Why ``model_mode`` can never run on ``profile`` (even its smallest image alone), or ''.

    The composer shows such a mode disabled with this reason instead of offering it.
    """
    if model_mode not in profile.models:
        return ""
    side = profile.limits.min_size
    smallest = RequestSettings(
        model_mode=model_mode,
        width=side,
        height=side,
        steps=1,
        cfg=0.0,
        sampler="",
        scheduler="",
        lora=None,
        lora_strength=1.0,
        seed_policy="random",
        count=1,
    )
    need = _need(profile, smallest, model_mode=model_mode, batch=1).total_bytes
    budget = comfy_budget_bytes(profile)
    if need <= budget:
        return ""
    return (
        f"needs ≈ {gb(need)} even for one {side}×{side} image; profile {profile.name} "
        f"allows {gb(budget)}"
    )
