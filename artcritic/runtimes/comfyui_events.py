"""Map ComfyUI's websocket messages for one prompt to ComfyProgress events (protocols.md 1.3)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from artcritic.runtimes.comfyui_types import ComfyProgress, as_dict

OnEvent = Callable[[ComfyProgress], None]


class RunWatch:
    """Follows one prompt's messages; knows when ComfyUI has finished it."""

    def __init__(self, graph: dict[str, Any], prompt_id: str, on_event: OnEvent) -> None:
        self.prompt_id = prompt_id
        self.on_event = on_event
        self.types = {
            str(node_id): str(node.get("class_type"))
            for node_id, node in graph.items()
            if isinstance(node, dict)
        }
        self.started = False
        self.finished = False
        self.last = "queued"
        self.failure: tuple[str, dict[str, Any]] | None = None
        self._queue_remaining: int | None = None

    def _emit(self, progress: ComfyProgress) -> None:
        self.last = describe(progress)
        self.on_event(progress)

    def text(self, raw: str) -> bool:
        """Handle one text frame; True once ComfyUI said the prompt is done."""
        try:
            message = json.loads(raw)
        except json.JSONDecodeError:
            return False
        if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
            return False
        return self.message(str(message.get("type")), message["data"])

    def message(self, kind: str, data: dict[str, Any]) -> bool:
        """Handle one decoded message; unknown types and other prompts are ignored."""
        if kind == "status":
            self._status(data)
            return False
        if data.get("prompt_id") != self.prompt_id:
            # Reconnect notices carry no prompt_id; other prompts are not ours.
            return False
        pid = self.prompt_id
        if kind == "execution_start":
            self.started = True
            self._emit(ComfyProgress("started", pid))
        elif kind == "execution_cached":
            nodes = tuple(str(n) for n in data.get("nodes") or ())
            self._emit(ComfyProgress("cached", pid, cached_nodes=nodes))
        elif kind == "executing":
            node = data.get("node")
            if node is None:
                self.finished = True
                return True
            self._emit(
                ComfyProgress("node", pid, node=str(node), node_type=self.types.get(str(node)))
            )
        elif kind == "progress":
            value, maximum = _int(data.get("value")), _int(data.get("max"))
            if value is None or maximum is None:
                return False  # a step we cannot show honestly is not shown at all
            node = str(data.get("node")) if data.get("node") is not None else None
            step = ComfyProgress(
                "step",
                pid,
                node=node,
                node_type=self.types.get(node or ""),
                value=value,
                max=maximum,
            )
            self._emit(step)
        elif kind == "executed":
            node = str(data.get("node"))
            output = as_dict(data.get("output"))
            names = tuple(
                str(i.get("filename")) for i in output.get("images") or () if isinstance(i, dict)
            )
            self._emit(
                ComfyProgress(
                    "executed", pid, node=node, node_type=self.types.get(node), filenames=names
                )
            )
        elif kind in ("execution_error", "execution_interrupted"):
            self.failure = (kind, data)
        return False

    def _status(self, data: dict[str, Any]) -> None:
        # The on-connect status (it carries "sid") predates our prompt; after the start the
        # queue length is no longer what the user waits on.
        if self.started or "sid" in data:
            return
        info = as_dict(as_dict(data.get("status")).get("exec_info"))
        remaining = _int(info.get("queue_remaining"))
        if remaining is not None and remaining != self._queue_remaining:
            self._queue_remaining = remaining
            self._emit(ComfyProgress("queued", self.prompt_id, queue_remaining=remaining))


def describe(progress: ComfyProgress) -> str:
    """A short phrase for messages such as "last event: KSampler step 3/20"."""
    node = f"node {progress.node} ({progress.node_type})"
    if progress.kind == "node":
        return f"loading in {node}" if progress.loading else f"running {node}"
    if progress.kind == "step":
        return f"{progress.node_type or node} step {progress.value}/{progress.max}"
    if progress.kind == "executed":
        return f"{node} saved {len(progress.filenames)} image(s)"
    return progress.kind


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None
