"""Turn ComfyUI's refusals and failure reports into domain errors a designer can act on.

An unknown node class has two shapes in the field, both meaning "install the custom node":
ComfyUI 0.3.64 (recorded from a real server) answers 400 with
``{"type": "invalid_prompt", "message": "Cannot execute because node X does not exist.",
"details": "Node ID '#n'", "extra_info": {}}``; newer servers answer
``missing_node_type`` with the class in ``extra_info.class_type``.
"""

from __future__ import annotations

import re
from typing import Any

from artcritic.runtimes.comfyui_types import as_dict
from artcritic.runtimes.errors import (
    RuntimeFailure,
    RuntimeInterrupted,
    RuntimeOutOfMemory,
    RuntimeRejected,
)

# Which models/ folder a loader input reads from, to say where a missing file belongs.
MODEL_FOLDERS = {
    "ckpt_name": "checkpoints",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "vae_name": "vae",
    "lora_name": "loras",
}
OOM_TYPES = ("torch.OutOfMemoryError", "torch.cuda.OutOfMemoryError")
_UNKNOWN_NODE = re.compile(r"Cannot execute because node (?P<name>.+?) does not exist\.?$")
_NO_CLASS_TYPE = "Cannot execute because a node is missing the class_type property"


def unknown_node_class(error: dict[str, Any]) -> str | None:
    """The node class ComfyUI does not know, from either shape of its refusal; else None."""
    kind, message = error.get("type"), str(error.get("message", ""))
    if kind == "missing_node_type":
        extra = as_dict(error.get("extra_info"))
        name = extra.get("class_type") or extra.get("node_title")
        if isinstance(name, str) and name:
            return name
        # Newer wording without extra_info: "Node 'X' not found. The custom node may not …"
        match = re.search(r"Node '(?P<name>[^']+)' not found", message)
        return match["name"] if match else "(a class without a name)"
    if kind == "invalid_prompt":
        match = _UNKNOWN_NODE.search(message.strip())
        if match:
            return match["name"]
    return None


def _custom_node_rejection(name: str, error: dict[str, Any]) -> RuntimeRejected:
    where = error.get("details") or ""
    return RuntimeRejected(
        f"ComfyUI has no node class {name!r}{f' ({where})' if where else ''}: the workflow "
        f"needs a custom node that is not installed. ComfyUI said: {error.get('message')} "
        f"({error.get('type')}).",
        f"Install the custom node that provides {name!r} in ComfyUI (e.g. with ComfyUI-Manager, "
        "or clone it into custom_nodes/ and restart ComfyUI), then re-run. The workflow was "
        "not changed to do without it.",
    )


def _describe(node_id: str, class_type: str, error: dict[str, Any]) -> str:
    kind = error.get("type", "unknown")
    extra = as_dict(error.get("extra_info"))
    name = extra.get("input_name")
    where = f"node {node_id} ({class_type})"
    if kind == "value_not_in_list":
        received = extra.get("received_value")
        return f"{where} input {name}: {received!r} is not in ComfyUI's list ({kind})"
    if kind == "required_input_missing":
        return f"{where} is missing its required input {name} ({kind})"
    if kind in ("invalid_input_type", "value_smaller_than_min", "value_bigger_than_max"):
        received = extra.get("received_value")
        return f"{where} input {name}: {received!r} — {error.get('message', '')} ({kind})"
    subject = f"{where} input {name}" if name else where
    return f"{subject}: {error.get('message', '')}: {error.get('details', '')} ({kind})"


def _next_for(error: dict[str, Any]) -> str:
    extra = as_dict(error.get("extra_info"))
    name = extra.get("input_name")
    if error.get("type") == "value_not_in_list" and name in MODEL_FOLDERS:
        folder = MODEL_FOLDERS[name]
        return (
            f"Install the model file {extra.get('received_value')!r} in ComfyUI's "
            f"models/{folder}/ folder and refresh ComfyUI's model list, or choose a model mode "
            "whose files are installed. Nothing was substituted."
        )
    if error.get("type") == "value_not_in_list" and name in ("sampler_name", "scheduler"):
        return (
            f"Choose a {name} this ComfyUI lists (GET /object_info/KSampler), or ask an admin to "
            "correct the profile's list. Nothing was substituted."
        )
    return (
        "Ask an admin to fix the workflow template or the request; check it with "
        "`manage.py runtime_doctor comfyui`. Nothing was changed to make it fit."
    )


def rejection_from_response(body: object) -> RuntimeRejected:
    """A RuntimeRejected naming every refused node input of a /prompt answer."""
    if not isinstance(body, dict):
        return RuntimeRejected(f"ComfyUI refused the workflow and said: {str(body)[:300]!r}.")
    node_errors = body.get("node_errors")
    parts: list[str] = []
    first: dict[str, Any] | None = None
    if isinstance(node_errors, dict):
        for node_id, entry in node_errors.items():
            if not isinstance(entry, dict):
                continue
            for error in entry.get("errors") or []:
                if isinstance(error, dict):
                    parts.append(_describe(str(node_id), str(entry.get("class_type")), error))
                    first = first or error
    if parts and first is not None:
        return RuntimeRejected(
            f"ComfyUI refused the workflow: {'; '.join(parts)}.", _next_for(first)
        )
    error = body.get("error")
    if isinstance(error, dict):
        kind = error.get("type", "unknown")
        missing = unknown_node_class(error)
        if missing is not None:
            return _custom_node_rejection(missing, error)
        if _NO_CLASS_TYPE in str(error.get("message", "")):
            return RuntimeRejected(
                f"ComfyUI refused the workflow: {error.get('message')} ({kind}, "
                f"{error.get('details')}).",
                "The workflow is corrupted: a node has no class_type. Ask an admin to fix the "
                "template; nothing was changed to make it fit.",
            )
        return RuntimeRejected(
            f"ComfyUI refused the workflow: {error.get('message')}: {error.get('details')} "
            f"({kind}).",
            _next_for(error),
        )
    return RuntimeRejected(f"ComfyUI refused the workflow: {error!r}.")


def is_oom(data: dict[str, Any]) -> bool:
    """ComfyUI's own test: the exception type, or "out of memory" in the message."""
    message = str(data.get("exception_message", "")).lower()
    return data.get("exception_type") in OOM_TYPES or "out of memory" in message


def failure_from_event(event: str, data: dict[str, Any]) -> RuntimeFailure:
    """The domain error for an execution_error / execution_interrupted report."""
    node = f"{data.get('node_type')} (node {data.get('node_id')})"
    if event == "execution_interrupted":
        return RuntimeInterrupted(f"ComfyUI interrupted the run in {node}.")
    if is_oom(data):
        # The shared default next action says what the user can change; nothing is retried.
        return RuntimeOutOfMemory(
            f"ComfyUI ran out of GPU memory in {node}. Nothing was retried at lower settings."
        )
    message = str(data.get("exception_message", "")).strip() or "no message"
    if len(message) > 500:
        message = message[:500] + "…"
    return RuntimeFailure(
        f"ComfyUI failed in {node}: {data.get('exception_type', 'unknown error')}: {message}",
        "Read ComfyUI's log for the traceback, fix the cause (often a missing or broken model "
        "file), then re-run the job.",
    )


def failure_from_history(entry: dict[str, Any]) -> RuntimeFailure:
    """The domain error for a finished history entry whose status is not success."""
    status = as_dict(entry.get("status"))
    for message in reversed(status.get("messages") or []):
        if (
            isinstance(message, list | tuple)
            and len(message) == 2
            and message[0] in ("execution_error", "execution_interrupted")
            and isinstance(message[1], dict)
        ):
            return failure_from_event(message[0], message[1])
    return RuntimeFailure(
        f"ComfyUI reports the run as {status.get('status_str', 'unknown')!r} without an error "
        "message.",
        "Read ComfyUI's log, then re-run the job.",
    )
