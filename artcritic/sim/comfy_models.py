"""The simulated ComfyUI's model folders, built from a hardware profile's model table.

Each component file of each model mode becomes a file in the folder ComfyUI
would read it from; its size on the GPU is params × dtype bytes, and a
``UNETLoader`` with an fp8 ``weight_dtype`` stores one byte per parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from artcritic.gpu.profiles import DTYPE_BYTES, GB, DiffusionModel, Profile

ROLE_FOLDER = {
    "transformer": "diffusion_models",
    "unet": "diffusion_models",
    "text_encoder": "text_encoders",
    "vae": "vae",
    "checkpoint": "checkpoints",
}
# Folder names the real server reports under GET /models (a subset: the ones that matter here).
FOLDERS = (
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "hypernetworks",
    "photomaker",
    "classifiers",
)
FP8_DTYPES = ("fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2")


@dataclass(frozen=True)
class WeightFile:
    """One model file on the simulated disk: its parameter count and stored bytes per param."""

    folder: str
    name: str
    params: float
    bytes_per_param: float

    def bytes_at(self, weight_dtype: str = "default") -> int:
        """Bytes it takes on the GPU when loaded with ``weight_dtype``."""
        per_param = 1.0 if weight_dtype in FP8_DTYPES else self.bytes_per_param
        return round(self.params * per_param)


@dataclass(frozen=True)
class SamplingCost:
    """What sampling with a model costs: seconds per step per megapixel and activation GB."""

    seconds_per_step_megapixel: float
    activation_base_gb: float
    activation_gb_per_megapixel: float

    def activation_bytes(self, width: int, height: int, batch: int) -> int:
        """Activation memory for one sampling run: base + per-MP × megapixels × batch."""
        megapixels = width * height / 1_000_000
        return round(
            (self.activation_base_gb + self.activation_gb_per_megapixel * megapixels * batch) * GB
        )

    def step_seconds(self, width: int, height: int, batch: int) -> float:
        """Simulated seconds for one sampler step (before the time scale)."""
        return self.seconds_per_step_megapixel * width * height / 1_000_000 * batch


# Used for a model file that no profile model mode describes (a hand-written workflow).
DEFAULT_COST = SamplingCost(0.5, 1.0, 0.5)


@dataclass(frozen=True)
class ModelCatalog:
    """Files per folder, their sizes, and the sampling cost of each main model file."""

    files: dict[str, tuple[str, ...]]
    weights: dict[tuple[str, str], WeightFile]
    costs: dict[tuple[str, str], SamplingCost] = field(default_factory=dict)

    def listing(self, folder: str) -> list[str]:
        """The file names ComfyUI would list for ``folder`` (sorted, like folder_paths)."""
        return list(self.files.get(folder, ()))

    def weight(self, folder: str, name: str) -> WeightFile | None:
        return self.weights.get((folder, name))

    def cost(self, folder: str, name: str, weight_dtype: str = "default") -> SamplingCost:
        """Sampling cost of a main model file; fp8 and default loads may differ."""
        return (
            self.costs.get((folder, f"{name}#{_dtype_class(weight_dtype)}"))
            or self.costs.get((folder, name))
            or DEFAULT_COST
        )


def _dtype_class(weight_dtype: str) -> str:
    return "fp8" if weight_dtype in FP8_DTYPES else "default"


def _main_component_folder(model: DiffusionModel) -> tuple[str, str] | None:
    for component in model.components:
        if component.role in ("transformer", "unet", "checkpoint"):
            return ROLE_FOLDER[component.role], component.file
    return None


def catalog_from_profile(
    profile: Profile, *, without: frozenset[str] = frozenset()
) -> ModelCatalog:
    """Build the simulated disk from the profile; ``without`` names files that are missing."""
    weights: dict[tuple[str, str], WeightFile] = {}
    costs: dict[tuple[str, str], SamplingCost] = {}
    for model in profile.models.values():
        for component in model.components:
            key = (ROLE_FOLDER[component.role], component.file)
            per_param = DTYPE_BYTES[component.dtype]
            known = weights.get(key)
            # One file can appear in two modes (bf16 and fp8 load of the same transformer):
            # the file on disk is stored at the wider dtype.
            if known is None or per_param > known.bytes_per_param:
                weights[key] = WeightFile(key[0], key[1], component.params_billion * 1e9, per_param)
        main = _main_component_folder(model)
        if main is not None:
            cost = SamplingCost(
                model.seconds_per_step_megapixel,
                model.activation_base_gb,
                model.activation_gb_per_megapixel,
            )
            costs[(main[0], f"{main[1]}#{_dtype_class(model.weight_dtype)}")] = cost
            costs.setdefault(main, cost)
    for lora in profile.loras.values():
        weights[("loras", lora.file)] = WeightFile("loras", lora.file, lora.size_gb * GB, 1.0)
    weights = {key: w for key, w in weights.items() if key[1] not in without}
    files: dict[str, tuple[str, ...]] = dict.fromkeys(FOLDERS, ())
    for folder, name in sorted(weights):
        files[folder] = (*files[folder], name)
    return ModelCatalog(files=files, weights=weights, costs=costs)
