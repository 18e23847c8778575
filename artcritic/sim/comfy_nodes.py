"""Node classes the simulated ComfyUI knows: inputs, outputs and their ``/object_info`` shape.

Input definitions (types, defaults, min/max, combo lists) follow ComfyUI's
``nodes.py`` and ``comfy_extras`` so that validation refuses what the real
server refuses. Combo lists of model files come from the simulated disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from artcritic.sim.comfy_models import ModelCatalog

MAX_RESOLUTION = 16384
SEED_MAX = 0xFFFFFFFFFFFFFFFF
SAMPLERS = (
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "res_multistep",
    "gradient_estimation",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
)
SCHEDULERS = (
    "simple",
    "sgm_uniform",
    "karras",
    "exponential",
    "ddim_uniform",
    "beta",
    "normal",
    "linear_quadratic",
    "kl_optimal",
)
WEIGHT_DTYPES = ("default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2")
DUAL_CLIP_TYPES = ("sdxl", "sd3", "flux", "hunyuan_video", "hidream")
CLIP_TYPES = ("stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv")
UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
BLEND_MODES = ("normal", "multiply", "screen", "overlay", "soft_light", "difference")


@dataclass(frozen=True)
class InputSpec:
    """One input: ``kind`` is INT/FLOAT/STRING/BOOLEAN, a link type (MODEL...) or a combo list."""

    name: str
    kind: str | tuple[str, ...]
    options: tuple[tuple[str, Any], ...] = ()
    required: bool = True

    @property
    def extra(self) -> dict[str, Any]:
        return dict(self.options)

    def config(self) -> list[Any]:
        """The ``[type, {options}]`` pair as ``/object_info`` and error ``input_config`` show it."""
        kind: Any = list(self.kind) if isinstance(self.kind, tuple) else self.kind
        return [kind, self.extra]


@dataclass(frozen=True)
class NodeSpec:
    name: str
    display_name: str
    category: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    output_names: tuple[str, ...] | None = None
    output_node: bool = False
    description: str = ""

    def input(self, name: str) -> InputSpec | None:
        return next((i for i in self.inputs if i.name == name), None)


def _int(name: str, default: int, lo: int, hi: int, step: int = 1) -> InputSpec:
    return InputSpec(name, "INT", (("default", default), ("min", lo), ("max", hi), ("step", step)))


def _float(name: str, default: float, lo: float, hi: float, step: float = 0.01) -> InputSpec:
    return InputSpec(
        name, "FLOAT", (("default", default), ("min", lo), ("max", hi), ("step", step))
    )


def _combo(name: str, values: list[str] | tuple[str, ...], *, required: bool = True) -> InputSpec:
    return InputSpec(name, tuple(values), (), required)


def _link(name: str, kind: str) -> InputSpec:
    return InputSpec(name, kind)


def _text(name: str, default: str = "", *, multiline: bool = False) -> InputSpec:
    options: tuple[tuple[str, Any], ...] = (("default", default),)
    if multiline:
        options = (("multiline", True), ("dynamicPrompts", True))
    return InputSpec(name, "STRING", options)


def _loaders(catalog: ModelCatalog) -> list[NodeSpec]:
    encoders = catalog.listing("text_encoders")
    return [
        NodeSpec(
            "CheckpointLoaderSimple",
            "Load Checkpoint",
            "loaders",
            (_combo("ckpt_name", catalog.listing("checkpoints")),),
            ("MODEL", "CLIP", "VAE"),
            description="Loads a diffusion model checkpoint.",
        ),
        NodeSpec(
            "UNETLoader",
            "Load Diffusion Model",
            "advanced/loaders",
            (
                _combo("unet_name", catalog.listing("diffusion_models")),
                _combo("weight_dtype", WEIGHT_DTYPES),
            ),
            ("MODEL",),
        ),
        NodeSpec(
            "DualCLIPLoader",
            "DualCLIPLoader",
            "advanced/loaders",
            (
                _combo("clip_name1", encoders),
                _combo("clip_name2", encoders),
                _combo("type", DUAL_CLIP_TYPES),
                _combo("device", ("default", "cpu"), required=False),
            ),
            ("CLIP",),
        ),
        NodeSpec(
            "CLIPLoader",
            "Load CLIP",
            "advanced/loaders",
            (
                _combo("clip_name", encoders),
                _combo("type", CLIP_TYPES),
                _combo("device", ("default", "cpu"), required=False),
            ),
            ("CLIP",),
        ),
        NodeSpec(
            "VAELoader",
            "Load VAE",
            "loaders",
            (_combo("vae_name", [*catalog.listing("vae"), "pixel_space"]),),
            ("VAE",),
        ),
        NodeSpec(
            "LoraLoader",
            "Load LoRA",
            "loaders",
            (
                _link("model", "MODEL"),
                _link("clip", "CLIP"),
                _combo("lora_name", catalog.listing("loras")),
                _float("strength_model", 1.0, -100.0, 100.0),
                _float("strength_clip", 1.0, -100.0, 100.0),
            ),
            ("MODEL", "CLIP"),
        ),
        NodeSpec(
            "LoraLoaderModelOnly",
            "LoraLoaderModelOnly",
            "loaders",
            (
                _link("model", "MODEL"),
                _combo("lora_name", catalog.listing("loras")),
                _float("strength_model", 1.0, -100.0, 100.0),
            ),
            ("MODEL",),
        ),
    ]


def _sampling() -> list[NodeSpec]:
    return [
        NodeSpec(
            "CLIPTextEncode",
            "CLIP Text Encode (Prompt)",
            "conditioning",
            (_text("text", multiline=True), _link("clip", "CLIP")),
            ("CONDITIONING",),
        ),
        NodeSpec(
            "FluxGuidance",
            "FluxGuidance",
            "advanced/conditioning/flux",
            (_link("conditioning", "CONDITIONING"), _float("guidance", 3.5, 0.0, 100.0, 0.1)),
            ("CONDITIONING",),
        ),
        NodeSpec(
            "EmptyLatentImage",
            "Empty Latent Image",
            "latent",
            (
                _int("width", 1024, 16, MAX_RESOLUTION, 8),
                _int("height", 1024, 16, MAX_RESOLUTION, 8),
                _int("batch_size", 1, 1, 4096),
            ),
            ("LATENT",),
        ),
        NodeSpec(
            "EmptySD3LatentImage",
            "EmptySD3LatentImage",
            "latent/sd3",
            (
                _int("width", 1024, 16, MAX_RESOLUTION, 16),
                _int("height", 1024, 16, MAX_RESOLUTION, 16),
                _int("batch_size", 1, 1, 4096),
            ),
            ("LATENT",),
        ),
        NodeSpec(
            "KSampler",
            "KSampler",
            "sampling",
            (
                _link("model", "MODEL"),
                InputSpec(
                    "seed",
                    "INT",
                    (
                        ("default", 0),
                        ("min", 0),
                        ("max", SEED_MAX),
                        ("control_after_generate", True),
                    ),
                ),
                _int("steps", 20, 1, 10000),
                InputSpec(
                    "cfg",
                    "FLOAT",
                    (
                        ("default", 8.0),
                        ("min", 0.0),
                        ("max", 100.0),
                        ("step", 0.1),
                        ("round", 0.01),
                    ),
                ),
                _combo("sampler_name", SAMPLERS),
                _combo("scheduler", SCHEDULERS),
                _link("positive", "CONDITIONING"),
                _link("negative", "CONDITIONING"),
                _link("latent_image", "LATENT"),
                _float("denoise", 1.0, 0.0, 1.0),
            ),
            ("LATENT",),
        ),
        NodeSpec(
            "VAEDecode",
            "VAE Decode",
            "latent",
            (_link("samples", "LATENT"), _link("vae", "VAE")),
            ("IMAGE",),
        ),
    ]


def _custom_sampling() -> list[NodeSpec]:
    """comfy_extras/nodes_custom_sampler.py: what the official FLUX examples sample with."""
    seed = InputSpec(
        "noise_seed",
        "INT",
        (("default", 0), ("min", 0), ("max", SEED_MAX), ("control_after_generate", True)),
    )
    cfg = InputSpec(
        "cfg",
        "FLOAT",
        (("default", 8.0), ("min", 0.0), ("max", 100.0), ("step", 0.1), ("round", 0.01)),
    )
    return [
        NodeSpec(
            "RandomNoise", "RandomNoise", "sampling/custom_sampling/noise", (seed,), ("NOISE",)
        ),
        NodeSpec(
            "KSamplerSelect",
            "KSamplerSelect",
            "sampling/custom_sampling/samplers",
            (_combo("sampler_name", SAMPLERS),),
            ("SAMPLER",),
        ),
        NodeSpec(
            "BasicScheduler",
            "BasicScheduler",
            "sampling/custom_sampling/schedulers",
            (
                _link("model", "MODEL"),
                _combo("scheduler", SCHEDULERS),
                _int("steps", 20, 1, 10000),
                _float("denoise", 1.0, 0.0, 1.0),
            ),
            ("SIGMAS",),
        ),
        NodeSpec(
            "BasicGuider",
            "BasicGuider",
            "sampling/custom_sampling/guiders",
            (_link("model", "MODEL"), _link("conditioning", "CONDITIONING")),
            ("GUIDER",),
        ),
        NodeSpec(
            "CFGGuider",
            "CFGGuider",
            "sampling/custom_sampling/guiders",
            (
                _link("model", "MODEL"),
                _link("positive", "CONDITIONING"),
                _link("negative", "CONDITIONING"),
                cfg,
            ),
            ("GUIDER",),
        ),
        NodeSpec(
            "SamplerCustomAdvanced",
            "SamplerCustomAdvanced",
            "sampling/custom_sampling",
            (
                _link("noise", "NOISE"),
                _link("guider", "GUIDER"),
                _link("sampler", "SAMPLER"),
                _link("sigmas", "SIGMAS"),
                _link("latent_image", "LATENT"),
            ),
            ("LATENT", "LATENT"),
            output_names=("output", "denoised_output"),
        ),
    ]


def _images() -> list[NodeSpec]:
    return [
        NodeSpec(
            "SaveImage",
            "Save Image",
            "image",
            (_link("images", "IMAGE"), _text("filename_prefix", "ComfyUI")),
            (),
            output_node=True,
            description="Saves the input images to your ComfyUI output directory.",
        ),
        NodeSpec(
            "PreviewImage",
            "Preview Image",
            "image",
            (_link("images", "IMAGE"),),
            (),
            output_node=True,
            description="Saves the input images to your ComfyUI temp directory.",
        ),
        NodeSpec(
            "EmptyImage",
            "EmptyImage",
            "image",
            (
                _int("width", 512, 1, MAX_RESOLUTION),
                _int("height", 512, 1, MAX_RESOLUTION),
                _int("batch_size", 1, 1, 4096),
                _int("color", 0, 0, 0xFFFFFF),
            ),
            ("IMAGE",),
        ),
        NodeSpec(
            "ImageScale",
            "Upscale Image",
            "image/upscaling",
            (
                _link("image", "IMAGE"),
                _combo("upscale_method", UPSCALE_METHODS),
                _int("width", 512, 0, MAX_RESOLUTION),
                _int("height", 512, 0, MAX_RESOLUTION),
                _combo("crop", ("disabled", "center")),
            ),
            ("IMAGE",),
        ),
        NodeSpec(
            "ImageBlend",
            "Image Blend",
            "image/postprocessing",
            (
                _link("image1", "IMAGE"),
                _link("image2", "IMAGE"),
                _float("blend_factor", 0.5, 0.0, 1.0),
                _combo("blend_mode", BLEND_MODES),
            ),
            ("IMAGE",),
        ),
    ]


def node_specs(catalog: ModelCatalog) -> dict[str, NodeSpec]:
    """Every node class the simulator runs, keyed by class_type."""
    specs = [*_loaders(catalog), *_sampling(), *_custom_sampling(), *_images()]
    return {spec.name: spec for spec in specs}


def node_info(spec: NodeSpec) -> dict[str, Any]:
    """The ``/object_info`` entry of one node class, in ComfyUI's V1 shape."""
    required = {i.name: i.config() for i in spec.inputs if i.required}
    optional = {i.name: i.config() for i in spec.inputs if not i.required}
    inputs: dict[str, Any] = {"required": required}
    if optional:
        inputs["optional"] = optional
    return {
        "input": inputs,
        "input_order": {key: list(value) for key, value in inputs.items()},
        "is_input_list": False,
        "output": list(spec.outputs),
        "output_is_list": [False] * len(spec.outputs),
        "output_name": list(spec.output_names or spec.outputs),
        "name": spec.name,
        "display_name": spec.display_name,
        "description": spec.description,
        "python_module": "nodes",
        "category": spec.category,
        "output_node": spec.output_node,
        "has_intermediate_output": False,
        "search_aliases": [],
    }
