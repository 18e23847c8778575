"""VRAM budget: what each runtime needs, computed from the profile's model table, never guessed.

Pure arithmetic (STYLE item 6): a validated ``Profile`` and plain values in, frozen
dataclasses and sentences out. Bytes are integers; profiles speak decimal GB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from artcritic.gpu.profiles import DTYPE_BYTES, GB, Profile

# vLLM hands out KV cache in blocks of 16 tokens (protocols.md 2.7), so a context is
# rounded up to whole blocks.
KV_BLOCK_TOKENS = 16

# How a component's role reads in a sentence; parts of one role are summed together.
_ROLE_WORDS = {
    "transformer": "transformer",
    "unet": "UNet",
    "checkpoint": "checkpoint",
    "text_encoder": "text encoders",
    "vae": "VAE",
}


@dataclass(frozen=True)
class VramNeed:
    """What one diffusion run needs in VRAM: the total and its named parts (bytes)."""

    total_bytes: int
    parts: tuple[tuple[str, int], ...]
    runtime: str
    # e.g. "FLUX.1-dev bf16 at 1024×1024 × 4": what the need is for, as a designer says it.
    subject: str = ""


@dataclass(frozen=True)
class CriticNeed:
    """What the Critic needs (computed) against what vLLM will claim (utilization × VRAM)."""

    total_bytes: int
    parts: tuple[tuple[str, int], ...]
    claim_bytes: int
    fits_in_claim: bool
    kv_bytes: int
    kv_bytes_per_token: int
    max_model_len: int
    max_num_seqs: int
    gpu_memory_utilization: float
    runtime: str = "critic"
    subject: str = ""


def gb(n_bytes: float) -> str:
    """Bytes as decimal GB with one decimal, the way the profile and the UI speak."""
    return f"{n_bytes / GB:.1f} GB"


def megapixels(width: int, height: int) -> float:
    """Output size in (decimal) megapixels, the unit of the activation estimate."""
    return width * height / 1e6


def diffusion_need(
    profile: Profile,
    *,
    model_mode: str,
    width: int,
    height: int,
    batch: int,
    lora: str | None,
) -> VramNeed:
    """VRAM for one ComfyUI prompt: every component's weights + LoRA + activations."""
    # An unknown model mode or LoRA is a KeyError: admission refuses those in words first.
    model = profile.models[model_mode]
    by_role: dict[str, int] = {}
    for component in model.components:
        # A text encoder unloaded after encoding still peaks together with the others at
        # encode time, so every component counts at its full size.
        words = _ROLE_WORDS[component.role]
        by_role[words] = by_role.get(words, 0) + component.weight_bytes
    parts = list(by_role.items())
    if lora is not None:
        parts.append((f"LoRA {lora}", round(profile.loras[lora].size_gb * GB)))
    activations_gb = (
        model.activation_base_gb
        + model.activation_gb_per_megapixel * megapixels(width, height) * batch
    )
    parts.append(("activations", round(activations_gb * GB)))
    return VramNeed(
        total_bytes=sum(size for _, size in parts),
        parts=tuple(parts),
        runtime="comfyui",
        subject=f"{model.label} at {width}×{height} × {batch}",
    )


def kv_bytes_per_token(profile: Profile) -> int:
    """K and V for one token across all layers: 2 × layers × kv_heads × head_dim × bytes."""
    critic = profile.critic
    return round(
        2 * critic.layers * critic.kv_heads * critic.head_dim * DTYPE_BYTES[critic.kv_dtype]
    )


def critic_need(profile: Profile) -> CriticNeed:
    """The Critic's weights + vision encoder + KV cache + activations, and vLLM's claim."""
    critic = profile.critic
    runtime = profile.runtimes.critic
    per_token = kv_bytes_per_token(profile)
    tokens = math.ceil(runtime.max_model_len / KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS
    kv = per_token * tokens * runtime.max_num_seqs
    parts = (
        ("weights", round(critic.weights_gb * GB)),
        ("vision encoder", round(critic.vision_encoder_gb * GB)),
        ("KV cache", kv),
        ("activations", round(critic.activation_gb * GB)),
    )
    total = sum(size for _, size in parts)
    claim = round(runtime.gpu_memory_utilization * profile.total_bytes)
    return CriticNeed(
        total_bytes=total,
        parts=parts,
        claim_bytes=claim,
        fits_in_claim=total <= claim,
        kv_bytes=kv,
        kv_bytes_per_token=per_token,
        max_model_len=runtime.max_model_len,
        max_num_seqs=runtime.max_num_seqs,
        gpu_memory_utilization=runtime.gpu_memory_utilization,
        subject=f"The Critic ({critic.label})",
    )


def usable_bytes(profile: Profile) -> int:
    """Total VRAM minus the reserve kept for the driver, the display and CUDA contexts."""
    return profile.usable_bytes


def runtimes_exclusive(profile: Profile) -> bool:
    """Whether the profile says ComfyUI and the Critic never share VRAM (so jobs swap them)."""
    return profile.are_exclusive("comfyui", "critic")


def comfy_budget_bytes(profile: Profile) -> int:
    """What a ComfyUI prompt may use: all of usable, or what the resident Critic leaves."""
    if runtimes_exclusive(profile):
        return usable_bytes(profile)
    # Without exclusivity the Critic stays resident with its whole claim; admitting ComfyUI
    # against the rest is what keeps "no release happens" true on such a profile.
    return max(0, usable_bytes(profile) - critic_need(profile).claim_bytes)


def resident_fit(profile: Profile, comfy_need: VramNeed, critic: CriticNeed) -> bool:
    """Whether ComfyUI at this need and the Critic at its claim fit in usable VRAM together."""
    # vLLM pre-allocates its whole claim, so the claim (not the computed need) is what it holds.
    critic_holds = max(critic.claim_bytes, critic.total_bytes)
    return comfy_need.total_bytes + critic_holds <= usable_bytes(profile)


def _parts_words(parts: tuple[tuple[str, int], ...]) -> str:
    return " + ".join(f"{name} {gb(size)}" for name, size in parts)


def explain_need(need: VramNeed | CriticNeed) -> str:
    """'FLUX.1-dev bf16 at 1024×1024 × 4 needs ≈ 36.2 GB (transformer 23.8 GB + …)'."""
    return f"{need.subject} needs ≈ {gb(need.total_bytes)} ({_parts_words(need.parts)})"


def explain_usable(profile: Profile) -> str:
    """'32.0 GB − 1.5 GB reserve': where the usable figure comes from."""
    return f"{gb(profile.total_bytes)} − {gb(profile.reserve_gb * GB)} reserve"


def explain_comfy_budget(profile: Profile) -> str:
    """'profile rtx5090-32gb allows 30.5 GB (32.0 GB − 1.5 GB reserve)'."""
    source = explain_usable(profile)
    if not runtimes_exclusive(profile):
        claim = critic_need(profile).claim_bytes
        source += f" − {gb(claim)} kept by the resident Critic"
    return f"profile {profile.name} allows {gb(comfy_budget_bytes(profile))} ({source})"


def explain_claim(need: CriticNeed, profile: Profile) -> str:
    """'gpu_memory_utilization 0.70 × 32.0 GB = 22.4 GB': what vLLM will take."""
    return (
        f"gpu_memory_utilization {need.gpu_memory_utilization:.2f} × "
        f"{gb(profile.total_bytes)} = {gb(need.claim_bytes)}"
    )


def explain_kv(need: CriticNeed) -> str:
    """'KV cache for 8192 tokens × 4 sequences needs 1.9 GB (56 KiB per token)'."""
    return (
        f"KV cache for {need.max_model_len} tokens × {need.max_num_seqs} sequences needs "
        f"{gb(need.kv_bytes)} ({need.kv_bytes_per_token / 1024:g} KiB per token)"
    )


def explain_diffusion(profile: Profile, need: VramNeed) -> str:
    """The whole VRAM sentence for a generation: the need, then what the profile allows."""
    return f"{explain_need(need)}; {explain_comfy_budget(profile)}."
