"""What each simulated node does: load weights, encode, sample, decode, save.

Values passed between nodes are small descriptions (which weights, which text,
which size) rather than tensors; VAEDecode draws the real pixels from them.
"""

from __future__ import annotations

import json
import os
import random
import re
import string
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops

from artcritic.sim.clock import sim_sleep
from artcritic.sim.comfy_models import DEFAULT_COST, SamplingCost
from artcritic.sim.comfy_state import SimRuntime, Weight
from artcritic.sim.draw import image_draw, png_encode, preview_draw


class SimCudaOutOfMemory(Exception):
    """Stands for torch.OutOfMemoryError raised inside a node."""


@dataclass(frozen=True)
class ModelValue:
    weights: tuple[Weight, ...]
    main: str
    cost: SamplingCost = DEFAULT_COST

    def __str__(self) -> str:
        return "<comfy.model_patcher.ModelPatcher object (simulated)>"


@dataclass(frozen=True)
class ClipValue:
    weights: tuple[Weight, ...]

    def __str__(self) -> str:
        return "<comfy.sd.CLIP object (simulated)>"


@dataclass(frozen=True)
class VaeValue:
    weights: tuple[Weight, ...]

    def __str__(self) -> str:
        return "<comfy.sd.VAE object (simulated)>"


@dataclass(frozen=True)
class CondValue:
    text: str
    guidance: float | None = None

    def __str__(self) -> str:
        return "[[<tensor (simulated)>, {'pooled_output': <tensor (simulated)>}]]"


@dataclass(frozen=True)
class LatentValue:
    width: int
    height: int
    batch: int
    text: str | None = None
    seed: int | None = None

    def __str__(self) -> str:
        return f"{{'samples': <tensor [{self.batch}, ?, {self.height // 8}, {self.width // 8}]>}}"


@dataclass(frozen=True)
class ImageValue:
    images: tuple[Image.Image, ...] = field(default=())

    def __str__(self) -> str:
        size = self.images[0].size if self.images else (0, 0)
        return f"<tensor [{len(self.images)}, {size[1]}, {size[0]}, 3] (simulated)>"


@dataclass
class NodeCall:
    """One node about to run: its id, resolved inputs, and the prompt it belongs to."""

    node_id: str
    inputs: dict[str, Any]
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    rt: SimRuntime


Ui = dict[str, Any] | None
Op = Callable[[NodeCall], tuple[tuple[Any, ...], Ui]]


def _weight(call: NodeCall, folder: str, name: str, weight_dtype: str = "default") -> Weight:
    known = call.rt.catalog.weight(folder, name)
    if known is None:
        # Validation already checked the combo list; this is a file that vanished since.
        raise FileNotFoundError(f"Model in folder '{folder}' with filename '{name}' not found.")
    return Weight(f"{folder}/{name}@{weight_dtype}", known.bytes_at(weight_dtype))


def _load(call: NodeCall, weights: tuple[Weight, ...]) -> tuple[Weight, ...]:
    call.rt.residency.ensure(weights)
    return weights


def op_checkpoint(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    name = call.inputs["ckpt_name"]
    weights = _load(call, (_weight(call, "checkpoints", name),))
    cost = call.rt.catalog.cost("checkpoints", name)
    # One file holds all three; the same allocation label means it is counted once.
    return (
        ModelValue(weights, weights[0].label, cost),
        ClipValue(weights),
        VaeValue(weights),
    ), None


def op_unet(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    name, dtype = call.inputs["unet_name"], call.inputs["weight_dtype"]
    weights = _load(call, (_weight(call, "diffusion_models", name, dtype),))
    cost = call.rt.catalog.cost("diffusion_models", name, dtype)
    return (ModelValue(weights, weights[0].label, cost),), None


def op_dual_clip(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    names = (call.inputs["clip_name1"], call.inputs["clip_name2"])
    weights = _load(call, tuple(_weight(call, "text_encoders", n) for n in names))
    return (ClipValue(weights),), None


def op_clip(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    weights = _load(call, (_weight(call, "text_encoders", call.inputs["clip_name"]),))
    return (ClipValue(weights),), None


def op_vae(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    name = call.inputs["vae_name"]
    if name == "pixel_space":
        return (VaeValue(()),), None
    return (VaeValue(_load(call, (_weight(call, "vae", name),))),), None


def op_lora(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    model: ModelValue = call.inputs["model"]
    lora = _load(call, (_weight(call, "loras", call.inputs["lora_name"]),))
    patched = ModelValue(model.weights + lora, model.main, model.cost)
    if "clip" not in call.inputs:
        return (patched,), None
    clip: ClipValue = call.inputs["clip"]
    return (patched, ClipValue(clip.weights + lora)), None


def op_encode(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    clip: ClipValue = call.inputs["clip"]
    # After a /free the cached loader output still describes the weights: reload them.
    call.rt.residency.ensure(clip.weights)
    return (CondValue(call.inputs["text"]),), None


def op_guidance(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    cond: CondValue = call.inputs["conditioning"]
    return (CondValue(cond.text, call.inputs["guidance"]),), None


def op_empty_latent(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    i = call.inputs
    return (LatentValue(i["width"], i["height"], i["batch_size"]),), None


def op_ksampler(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    rt, i = call.rt, call.inputs
    model: ModelValue = i["model"]
    latent: LatentValue = i["latent_image"]
    positive: CondValue = i["positive"]
    rt.residency.ensure(model.weights)
    rt.residency.warm(model.main)
    if rt.faults.take("oom"):
        raise SimCudaOutOfMemory("simulated fault 'oom'")
    need = model.cost.activation_bytes(latent.width, latent.height, latent.batch)
    rt.residency.allocate("activations", need, keep={w.label for w in model.weights})
    rt.gpu.set_busy(rt.owner, True)
    try:
        _sample_steps(
            call, model.cost, latent, text=positive.text, steps=int(i["steps"]), seed=int(i["seed"])
        )
    finally:
        rt.gpu.set_busy(rt.owner, False)
        rt.gpu.release(rt.owner, "activations")
    return (LatentValue(latent.width, latent.height, latent.batch, positive.text, i["seed"]),), None


def _sample_steps(
    call: NodeCall, cost: SamplingCost, latent: LatentValue, *, text: str, steps: int, seed: int
) -> None:
    rt = call.rt
    per_step = cost.step_seconds(latent.width, latent.height, latent.batch)
    for step in range(1, steps + 1):
        rt.check_interrupt()
        sim_sleep(per_step)
        if step >= max(1, steps // 2):
            _mid_run_faults(rt)
        rt.to_client(
            "progress",
            {"value": step, "max": steps, "prompt_id": rt.last_prompt_id, "node": call.node_id},
        )
        rt.progress_state(call.node_id, step, steps, "running")
        if rt.preview_method != "none":
            _send_preview(call, text, seed, step, steps)


def _mid_run_faults(rt: SimRuntime) -> None:
    if rt.faults.active("crash_mid_run"):
        # The process exits once the frames already sent are out (the publisher keeps their
        # order), so the client's last event is the last step it was sent, every time.
        rt.send("__crash__", None, None)
        threading.Event().wait()
    if rt.faults.active("drop_ws"):
        rt.send("__drop_ws__", None, None)
    if rt.faults.active("hang"):
        threading.Event().wait()


def _send_preview(call: NodeCall, text: str, seed: int, step: int, steps: int) -> None:
    rt = call.rt
    png = preview_draw(text, seed, step, steps)
    if rt.client_id in rt.preview_metadata_clients:
        meta = json.dumps(
            {
                "node_id": call.node_id,
                "prompt_id": rt.last_prompt_id,
                "display_node_id": call.node_id,
                "parent_node_id": None,
                "real_node_id": call.node_id,
                "image_type": "image/png",
            }
        ).encode()
        rt.to_client(4, struct.pack(">I", len(meta)) + meta + png)
    else:
        rt.to_client(1, struct.pack(">I", 2) + png)


@dataclass(frozen=True)
class CustomValue:
    """NOISE, SAMPLER, SIGMAS or GUIDER of the custom-sampling nodes: what they carry."""

    kind: str
    seed: int = 0
    steps: int = 0
    model: ModelValue | None = None
    positive: CondValue | None = None

    def __str__(self) -> str:
        return f"<{self.kind} (simulated)>"


def op_random_noise(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    return (CustomValue("NOISE", seed=int(call.inputs["noise_seed"])),), None


def op_sampler_select(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    return (CustomValue("SAMPLER"),), None


def op_basic_scheduler(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    return (CustomValue("SIGMAS", steps=int(call.inputs["steps"])),), None


def op_guider(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    i = call.inputs
    positive = i.get("conditioning", i.get("positive"))
    return (CustomValue("GUIDER", model=i["model"], positive=positive),), None


def op_sampler_custom_advanced(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    """SamplerCustomAdvanced: KSampler's work with noise, guider and sigmas split out."""
    rt, i = call.rt, call.inputs
    noise: CustomValue = i["noise"]
    guider: CustomValue = i["guider"]
    sigmas: CustomValue = i["sigmas"]
    latent: LatentValue = i["latent_image"]
    model, positive = guider.model, guider.positive
    # The guider nodes always set both.
    assert model is not None
    assert positive is not None
    rt.residency.ensure(model.weights)
    rt.residency.warm(model.main)
    if rt.faults.take("oom"):
        raise SimCudaOutOfMemory("simulated fault 'oom'")
    need = model.cost.activation_bytes(latent.width, latent.height, latent.batch)
    rt.residency.allocate("activations", need, keep={w.label for w in model.weights})
    rt.gpu.set_busy(rt.owner, True)
    try:
        _sample_steps(
            call, model.cost, latent, text=positive.text, steps=sigmas.steps, seed=noise.seed
        )
    finally:
        rt.gpu.set_busy(rt.owner, False)
        rt.gpu.release(rt.owner, "activations")
    out = LatentValue(latent.width, latent.height, latent.batch, positive.text, noise.seed)
    return (out, out), None


def op_decode(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    latent: LatentValue = call.inputs["samples"]
    vae: VaeValue = call.inputs["vae"]
    call.rt.residency.ensure(vae.weights)
    # The VAE turns each latent cell into 8×8 pixels: sizes are rounded down to a multiple of 8.
    width, height = latent.width // 8 * 8, latent.height // 8 * 8
    if latent.text is None or latent.seed is None:
        images = tuple(
            Image.new("RGB", (width, height), (128, 128, 128)) for _ in range(latent.batch)
        )
    else:
        images = tuple(
            image_draw(latent.text, latent.seed, index, width, height)
            for index in range(latent.batch)
        )
    return (ImageValue(images),), None


def op_empty_image(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    i = call.inputs
    colour = int(i["color"])
    rgb = ((colour >> 16) & 0xFF, (colour >> 8) & 0xFF, colour & 0xFF)
    image = Image.new("RGB", (i["width"], i["height"]), rgb)
    return (ImageValue(tuple(image.copy() for _ in range(i["batch_size"]))),), None


def op_scale(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    i = call.inputs
    source: ImageValue = i["image"]
    methods = {
        "nearest-exact": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "area": Image.Resampling.BOX,
        "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS,
    }
    out = []
    for image in source.images:
        # ComfyUI keeps the aspect ratio when one side is 0.
        width = i["width"] or max(1, round(image.width * i["height"] / image.height))
        height = i["height"] or max(1, round(image.height * i["width"] / image.width))
        out.append(image.resize((width, height), methods[i["upscale_method"]]))
    return (ImageValue(tuple(out)),), None


def op_blend(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    i = call.inputs
    first: ImageValue = i["image1"]
    second: ImageValue = i["image2"]
    modes = {
        "multiply": ImageChops.multiply,
        "screen": ImageChops.screen,
        "overlay": ImageChops.overlay,
        "soft_light": ImageChops.soft_light,
        "difference": ImageChops.difference,
    }
    out = []
    for index, a in enumerate(first.images):
        b = second.images[min(index, len(second.images) - 1)].resize(a.size)
        mixed = modes[i["blend_mode"]](a, b) if i["blend_mode"] in modes else b
        out.append(Image.blend(a, mixed, float(i["blend_factor"])))
    return (ImageValue(tuple(out)),), None


def _counter(folder: Path, filename: str) -> int:
    pattern = re.compile(rf"^{re.escape(filename)}_(\d+)_")
    found = [int(m.group(1)) for p in folder.glob("*") if (m := pattern.match(p.name))]
    return max(found, default=0) + 1


def save_images(call: NodeCall, images: ImageValue, prefix: str, base: Path, kind: str) -> Ui:
    """Write images like folder_paths.get_save_image_path + SaveImage.save_images."""
    first = images.images[0] if images.images else Image.new("RGB", (1, 1))
    prefix = prefix.replace("%width%", str(first.width)).replace("%height%", str(first.height))
    subfolder = os.path.dirname(os.path.normpath(prefix))
    filename = os.path.basename(os.path.normpath(prefix))
    folder = (base / subfolder).resolve()
    if os.path.commonpath((str(base.resolve()), str(folder))) != str(base.resolve()):
        # The real node raises a bare Exception with exactly this text.
        raise Exception(
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {folder}\n         output_dir: {base.resolve()}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    counter = _counter(folder, filename)
    results = []
    for batch_number, image in enumerate(images.images):
        name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
        (folder / name).write_bytes(_encode(call, image))
        results.append({"filename": name, "subfolder": subfolder, "type": kind})
        counter += 1
    return {"images": results}


def _encode(call: NodeCall, image: Image.Image) -> bytes:
    faults = call.rt.faults
    if faults.active("garbage_output"):
        return b"\x89PNG\r\n\x1a\n" + b"simulated garbage: this is not an image" * 8
    if faults.active("wrong_size"):
        image = image.resize((max(1, image.width // 2), max(1, image.height // 2)))
    return png_encode(image, prompt=call.prompt, extra_pnginfo=call.extra_data.get("extra_pnginfo"))


def op_save(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    images: ImageValue = call.inputs["images"]
    return (), save_images(
        call, images, call.inputs["filename_prefix"], call.rt.output_dir, "output"
    )


def op_preview(call: NodeCall) -> tuple[tuple[Any, ...], Ui]:
    images: ImageValue = call.inputs["images"]
    suffix = "".join(random.choice(string.ascii_lowercase) for _ in range(5))
    return (), save_images(call, images, f"ComfyUI_temp_{suffix}", call.rt.temp_dir, "temp")


OPS: dict[str, Op] = {
    "CheckpointLoaderSimple": op_checkpoint,
    "UNETLoader": op_unet,
    "DualCLIPLoader": op_dual_clip,
    "CLIPLoader": op_clip,
    "VAELoader": op_vae,
    "LoraLoader": op_lora,
    "LoraLoaderModelOnly": op_lora,
    "CLIPTextEncode": op_encode,
    "FluxGuidance": op_guidance,
    "EmptyLatentImage": op_empty_latent,
    "EmptySD3LatentImage": op_empty_latent,
    "KSampler": op_ksampler,
    "RandomNoise": op_random_noise,
    "KSamplerSelect": op_sampler_select,
    "BasicScheduler": op_basic_scheduler,
    "BasicGuider": op_guider,
    "CFGGuider": op_guider,
    "SamplerCustomAdvanced": op_sampler_custom_advanced,
    "VAEDecode": op_decode,
    "SaveImage": op_save,
    "PreviewImage": op_preview,
    "EmptyImage": op_empty_image,
    "ImageScale": op_scale,
    "ImageBlend": op_blend,
}
