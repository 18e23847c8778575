"""ComfyUI workflow templates (API format) filled with exactly a request's settings.

Templates live in ``workflows/*.json``. ``graph_build`` sets every value the
request names — model files and weight dtype, prompt texts, size, batch, seed,
steps, cfg, sampler, scheduler, FLUX guidance, file prefix — and splices a LoRA
in per protocols.md 1.7. It never rounds, clamps or substitutes a value: a
template that cannot carry a setting is a ``WorkflowError``, not a quiet skip.

FLUX note: KSampler's ``cfg`` stays exactly what was requested (FLUX-dev is
normally run at 1.0); FLUX's distilled guidance is the separate ``guidance``
argument and goes to the FluxGuidance node. Templates without FluxGuidance
(SDXL) have no such setting, so ``guidance`` does not apply to them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from artcritic.gpu.profiles import DiffusionModel, Lora
from artcritic.runtimes.comfyui_types import ExpectedImages
from artcritic.runtimes.errors import RuntimeFailure

WORKFLOWS_DIR = Path(__file__).resolve().parent / "workflows"
LATENT_NODES = ("EmptyLatentImage", "EmptySD3LatentImage")
Graph = dict[str, Any]


class WorkflowError(RuntimeFailure):
    """A template cannot carry the request as asked; nothing was sent to ComfyUI."""

    default_next_action = (
        "Ask an admin to fix the workflow template or the profile's model table; "
        "the request was not changed to fit."
    )


def template_load(name: str, *, directory: Path = WORKFLOWS_DIR) -> Graph:
    """Read one API-format template and check its shape (nodes with class_type and inputs)."""
    path = directory / name
    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkflowError(f"Workflow template {path} cannot be read: {exc.strerror}.") from None
    except json.JSONDecodeError as exc:
        raise WorkflowError(f"Workflow template {path} is not valid JSON: {exc}.") from None
    graph_check(graph, source=str(path))
    return dict(graph)


def graph_check(graph: object, *, source: str) -> None:
    """Refuse anything that is not an API-format graph (UI-format exports included)."""
    if isinstance(graph, dict) and "nodes" in graph and "links" in graph:
        raise WorkflowError(
            f"{source} is a UI-format workflow (it has 'nodes' and 'links').",
            "Export it from ComfyUI with 'Save (API Format)' and use that file.",
        )
    if not isinstance(graph, dict) or not graph:
        raise WorkflowError(f"{source} must be a JSON object of nodes keyed by node id.")
    for node_id, node in graph.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise WorkflowError(f"{source}: node {node_id!r} has no class_type.")
        if not isinstance(node.get("inputs"), dict):
            raise WorkflowError(f"{source}: node {node_id!r} has no inputs object.")


def _is_link(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _ids(graph: Graph, class_type: str) -> list[str]:
    return [node_id for node_id, node in graph.items() if node["class_type"] == class_type]


def _only(graph: Graph, class_type: str, template: str) -> str:
    found = _ids(graph, class_type)
    if len(found) != 1:
        raise WorkflowError(
            f"Template {template} must have exactly one {class_type} node; it has {len(found)}."
        )
    return found[0]


def _upstream(graph: Graph, node_id: str, input_name: str, template: str) -> str:
    value = graph[node_id]["inputs"].get(input_name)
    if not _is_link(value) or value[0] not in graph:
        raise WorkflowError(
            f"Template {template}: node {node_id} ({graph[node_id]['class_type']}) input "
            f"{input_name} is not linked to a node of the template."
        )
    source: str = value[0]
    return source


def _text_node(graph: Graph, sampler: str, which: str, template: str) -> tuple[str, str | None]:
    """The CLIPTextEncode feeding KSampler's ``which`` input, and a FluxGuidance on the way."""
    node_id = _upstream(graph, sampler, which, template)
    guidance = None
    if graph[node_id]["class_type"] == "FluxGuidance":
        guidance, node_id = node_id, _upstream(graph, node_id, "conditioning", template)
    if graph[node_id]["class_type"] != "CLIPTextEncode":
        raise WorkflowError(
            f"Template {template}: KSampler's {which} input does not come from a CLIPTextEncode."
        )
    return node_id, guidance


def _assign_files(graph: Graph, model: DiffusionModel, template: str) -> None:
    by_role: dict[str, list[str]] = {}
    for component in model.components:
        by_role.setdefault(component.role, []).append(component.file)
    main = by_role.pop("transformer", []) + by_role.pop("unet", [])
    if main:
        unet = _only(graph, "UNETLoader", template)
        graph[unet]["inputs"].update(unet_name=main[0], weight_dtype=model.weight_dtype)
    elif model.weight_dtype != "default":
        raise WorkflowError(
            f"Model {model.label} asks for weight_dtype {model.weight_dtype}, which only a "
            f"UNETLoader can apply, and it has no transformer/unet component."
        )
    if ckpt := by_role.pop("checkpoint", []):
        graph[_only(graph, "CheckpointLoaderSimple", template)]["inputs"]["ckpt_name"] = ckpt[0]
    if vae := by_role.pop("vae", []):
        graph[_only(graph, "VAELoader", template)]["inputs"]["vae_name"] = vae[0]
    encoders = by_role.pop("text_encoder", [])
    if len(encoders) == 2:
        node = graph[_only(graph, "DualCLIPLoader", template)]["inputs"]
        node.update(clip_name1=encoders[0], clip_name2=encoders[1])
    elif len(encoders) == 1:
        graph[_only(graph, "CLIPLoader", template)]["inputs"]["clip_name"] = encoders[0]
    elif encoders:
        raise WorkflowError(f"Model {model.label} has {len(encoders)} text encoders; 1 or 2 fit.")


def _new_id(graph: Graph) -> str:
    numeric = [int(k) for k in graph if k.isdigit()]
    return str(max(numeric, default=0) + 1)


def _rewire(graph: Graph, old: list[Any], new: list[Any], skip: str) -> None:
    for node_id, node in graph.items():
        if node_id == skip:
            continue
        for name, value in node["inputs"].items():
            if _is_link(value) and value == old:
                node["inputs"][name] = list(new)


def _splice_lora(
    graph: Graph, model: DiffusionModel, lora: Lora, strength: float, *, sampler: str, positive: str
) -> None:
    """Put the LoRA between the loaders and their consumers (protocols.md 1.7)."""
    if model.family not in lora.families:
        raise WorkflowError(
            f"LoRA {lora.file} is made for {', '.join(lora.families)}, not {model.family} "
            f"({model.label}).",
            "Choose a LoRA made for this model family; it was not dropped silently.",
        )
    model_link = list(graph[sampler]["inputs"]["model"])
    lora_id = _new_id(graph)
    title = {"title": f"LoRA {lora.file}"}
    if model.family == "flux":
        graph[lora_id] = {
            "class_type": "LoraLoaderModelOnly",
            "_meta": title,
            "inputs": {"model": model_link, "lora_name": lora.file, "strength_model": strength},
        }
        _rewire(graph, model_link, [lora_id, 0], lora_id)
        return
    clip_link = list(graph[positive]["inputs"]["clip"])
    graph[lora_id] = {
        "class_type": "LoraLoader",
        "_meta": title,
        "inputs": {
            "model": model_link,
            "clip": clip_link,
            "lora_name": lora.file,
            "strength_model": strength,
            "strength_clip": strength,
        },
    }
    _rewire(graph, model_link, [lora_id, 0], lora_id)
    _rewire(graph, clip_link, [lora_id, 1], lora_id)


def graph_build(
    model: DiffusionModel,
    *,
    prompt: str,
    negative: str,
    width: int,
    height: int,
    batch: int,
    seed: int,
    steps: int,
    cfg: float,
    sampler: str,
    scheduler: str,
    lora: Lora | None,
    lora_strength: float,
    filename_prefix: str,
    guidance: float = 3.5,
) -> Graph:
    """The model's template filled with exactly these settings (see the module docstring)."""
    template = model.workflow
    graph = copy.deepcopy(template_load(template))
    ks = _only(graph, "KSampler", template)
    graph[ks]["inputs"].update(
        seed=seed, steps=steps, cfg=cfg, sampler_name=sampler, scheduler=scheduler
    )
    latent = _upstream(graph, ks, "latent_image", template)
    if graph[latent]["class_type"] not in LATENT_NODES:
        raise WorkflowError(f"Template {template}: KSampler's latent_image is not an empty latent.")
    graph[latent]["inputs"].update(width=width, height=height, batch_size=batch)
    positive, flux_guidance = _text_node(graph, ks, "positive", template)
    negative_id, _ = _text_node(graph, ks, "negative", template)
    if positive == negative_id:
        raise WorkflowError(f"Template {template}: positive and negative share one text node.")
    graph[positive]["inputs"]["text"] = prompt
    graph[negative_id]["inputs"]["text"] = negative
    if flux_guidance is not None:
        graph[flux_guidance]["inputs"]["guidance"] = guidance
    graph[_only(graph, "SaveImage", template)]["inputs"]["filename_prefix"] = filename_prefix
    _assign_files(graph, model, template)
    if lora is not None:
        _splice_lora(graph, model, lora, lora_strength, sampler=ks, positive=positive)
    return graph


def _images_of(graph: Graph, node_id: str, depth: int = 0) -> tuple[int, int, int] | None:
    """(count, width, height) a node's IMAGE output will have, when the graph says so."""
    if depth > 64 or node_id not in graph:
        return None
    kind, inputs = graph[node_id]["class_type"], graph[node_id]["inputs"]
    found: tuple[int, int, int] | None = None
    if kind == "EmptyImage":
        found = _ints(inputs.get("batch_size"), inputs.get("width"), inputs.get("height"))
    elif kind == "VAEDecode" and _is_link(inputs.get("samples")):
        found = _latent_of(graph, inputs["samples"][0], depth + 1)
    elif kind == "ImageScale" and _is_link(inputs.get("image")):
        source = _images_of(graph, inputs["image"][0], depth + 1)
        size = _ints(1, inputs.get("width"), inputs.get("height"))
        # A 0 side keeps the aspect ratio, which the graph alone cannot tell.
        if source is not None and size is not None and 0 not in size:
            found = (source[0], size[1], size[2])
    elif kind == "ImageBlend" and _is_link(inputs.get("image1")):
        found = _images_of(graph, inputs["image1"][0], depth + 1)
    return found


def _latent_of(graph: Graph, node_id: str, depth: int) -> tuple[int, int, int] | None:
    if depth > 64 or node_id not in graph:
        return None
    node = graph[node_id]
    inputs = node["inputs"]
    if node["class_type"] in LATENT_NODES:
        return _ints(inputs.get("batch_size"), inputs.get("width"), inputs.get("height"))
    if node["class_type"] == "KSampler" and _is_link(inputs.get("latent_image")):
        return _latent_of(graph, inputs["latent_image"][0], depth + 1)
    return None


def _ints(*values: object) -> tuple[int, int, int] | None:
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        count, width, height = values
        return count, width, height  # type: ignore[return-value]
    return None


def graph_expected_images(graph: Graph) -> ExpectedImages | None:
    """What the graph's output nodes should deliver in total, or None if it cannot be told."""
    total, size = 0, None
    outputs = [k for k, n in graph.items() if n["class_type"] in ("SaveImage", "PreviewImage")]
    for node_id in outputs:
        images = graph[node_id]["inputs"].get("images")
        found = _images_of(graph, images[0]) if _is_link(images) else None
        if found is None or (size is not None and size != found[1:]):
            return None
        total, size = total + found[0], found[1:]
    if size is None:
        return None
    return ExpectedImages(count=total, width=size[0], height=size[1])
