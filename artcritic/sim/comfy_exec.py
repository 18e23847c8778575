"""The simulated ComfyUI's prompt queue, executor and worker thread.

Mirrors ``execution.PromptQueue``, ``PromptExecutor.execute_async`` and
``main.prompt_worker``: one prompt at a time, lowest ``number`` first, the same
websocket messages in the same order, history written before the final
``executing {node: null}``, and ``/free`` flags acted on between prompts.
"""

from __future__ import annotations

import copy
import hashlib
import heapq
import itertools
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from artcritic.sim.clock import sim_sleep
from artcritic.sim.comfy_ops import OPS, NodeCall, SimCudaOutOfMemory
from artcritic.sim.comfy_state import InterruptProcessing, SimRuntime
from artcritic.sim.gpu import SimOutOfMemory

log = logging.getLogger("artcritic.sim.comfyui")

MAXIMUM_HISTORY_SIZE = 10000
OOM_TIPS = (
    "This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked before "
    "you might have accidentally set the batch_size to a large number."
)


class PromptQueue:
    """Heap of pending prompts, the running one, history and the /free flags."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.mutex = threading.RLock()
        self.not_empty = threading.Condition(self.mutex)
        self.on_change = on_change
        self.queue: list[tuple[float, int, list[Any]]] = []
        self.running: dict[int, list[Any]] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.flags: dict[str, bool] = {}
        self._seq = itertools.count()
        self._task = itertools.count()

    def put(self, item: list[Any]) -> None:
        with self.mutex:
            heapq.heappush(self.queue, (float(item[0]), next(self._seq), item))
            self.on_change()
            self.not_empty.notify()

    def get(self, timeout: float) -> tuple[list[Any], int] | None:
        with self.not_empty:
            if not self.queue:
                self.not_empty.wait(timeout=timeout)
                if not self.queue:
                    return None
            item = heapq.heappop(self.queue)[2]
            task_id = next(self._task)
            self.running[task_id] = copy.deepcopy(item)
            self.on_change()
            return item, task_id

    def task_done(self, task_id: int, result: dict[str, Any], status: dict[str, Any]) -> None:
        with self.mutex:
            item = self.running.pop(task_id)
            if len(self.history) > MAXIMUM_HISTORY_SIZE:
                self.history.pop(next(iter(self.history)))
            self.history[item[1]] = {"prompt": item, "outputs": {}, "status": status, **result}
            self.on_change()

    def current(self) -> tuple[list[list[Any]], list[list[Any]]]:
        with self.mutex:
            return list(self.running.values()), [entry[2] for entry in self.queue]

    def remaining(self) -> int:
        with self.mutex:
            return len(self.queue) + len(self.running)

    def is_running(self, prompt_id: str) -> bool:
        with self.mutex:
            return any(item[1] == prompt_id for item in self.running.values())

    def wipe(self) -> None:
        with self.mutex:
            self.queue = []
            self.on_change()

    def delete(self, prompt_id: str) -> bool:
        with self.mutex:
            kept = [entry for entry in self.queue if entry[2][1] != prompt_id]
            if len(kept) == len(self.queue):
                return False
            self.queue = kept
            heapq.heapify(self.queue)
            self.on_change()
            return True

    def history_get(
        self, prompt_id: str | None = None, max_items: int | None = None, offset: int = -1
    ) -> dict[str, Any]:
        with self.mutex:
            if prompt_id is not None:
                entry = self.history.get(prompt_id)
                return {prompt_id: copy.deepcopy(entry)} if entry is not None else {}
            if offset < 0 and max_items is not None:
                offset = len(self.history) - max_items
            keys = list(self.history)[max(0, offset) :]
            if max_items is not None:
                keys = keys[:max_items]
            return {k: copy.deepcopy(self.history[k]) for k in keys}

    def history_wipe(self) -> None:
        with self.mutex:
            self.history = {}

    def history_delete(self, prompt_id: str) -> None:
        with self.mutex:
            self.history.pop(prompt_id, None)

    def set_flag(self, name: str, value: bool) -> None:
        with self.mutex:
            self.flags[name] = value
            self.not_empty.notify()

    def take_flags(self) -> dict[str, bool]:
        with self.mutex:
            flags, self.flags = self.flags, {}
            return flags


@dataclass
class CacheEntry:
    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None


def _is_link(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def node_signatures(prompt: dict[str, Any]) -> dict[str, str]:
    """Cache key per node: its class and inputs, with links replaced by upstream keys."""
    memo: dict[str, str] = {}

    def sig(node_id: str) -> str:
        if node_id not in memo:
            node = prompt[node_id]
            parts: list[Any] = [node["class_type"]]
            for name in sorted(node["inputs"]):
                value = node["inputs"][name]
                parts.append(
                    [name, ["link", sig(value[0]), value[1]] if _is_link(value) else value]
                )
            text = json.dumps(parts, sort_keys=True, default=str)
            memo[node_id] = hashlib.sha256(text.encode()).hexdigest()
        return memo[node_id]

    return {node_id: sig(node_id) for node_id in prompt}


def execution_order(prompt: dict[str, Any], outputs: list[str]) -> list[str]:
    """Dependencies first, outputs in the order they were validated."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(node_id: str) -> None:
        if node_id in seen:
            return
        seen.add(node_id)
        for value in prompt[node_id]["inputs"].values():
            if _is_link(value):
                visit(value[0])
        order.append(node_id)

    for output in outputs:
        visit(output)
    return order


def _format_value(value: Any) -> Any:
    if value is None or isinstance(value, int | float | bool | str):
        return value
    return str(value)


@dataclass
class PromptRun:
    """One prompt being executed: its graph and what has happened so far."""

    prompt: dict[str, Any]
    prompt_id: str
    extra: dict[str, Any]
    cached: list[str]
    values: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    ui_outputs: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def executed_message(self, node_id: str, ui: dict[str, Any]) -> dict[str, Any]:
        return {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": self.prompt_id}

    def record_ui(self, node_id: str, ui: dict[str, Any]) -> None:
        self.ui_outputs[node_id] = ui
        self.meta[node_id] = {
            "node_id": node_id,
            "display_node": node_id,
            "parent_node": None,
            "real_node_id": node_id,
        }


class Executor:
    """Runs one prompt at a time and keeps the classic output cache between prompts."""

    def __init__(self, rt: SimRuntime) -> None:
        self.rt = rt
        self.cache: dict[str, CacheEntry] = {}
        self.messages: list[list[Any]] = []
        self.success = True

    def reset(self) -> None:
        self.cache = {}

    def _message(self, event: str, data: dict[str, Any], *, broadcast: bool = False) -> None:
        data = {**data, "timestamp": int(time.time() * 1000)}
        self.messages.append([event, data])
        if self.rt.client_id is not None or broadcast:
            self.rt.send(event, data, self.rt.client_id)

    def execute(
        self, prompt: dict[str, Any], prompt_id: str, extra: dict[str, Any], outputs: list[str]
    ) -> dict[str, Any]:
        """Run the prompt; return the history result ``{"outputs", "meta"}``."""
        rt = self.rt
        rt.interrupt.clear()
        rt.client_id = extra.get("client_id")
        self.messages, self.success = [], True
        self._message("execution_start", {"prompt_id": prompt_id})
        signatures = node_signatures(prompt)
        live = set(signatures.values())
        self.cache = {key: entry for key, entry in self.cache.items() if key in live}
        cached = [node_id for node_id, key in signatures.items() if key in self.cache]
        self._message("execution_cached", {"nodes": cached, "prompt_id": prompt_id})
        run = PromptRun(prompt, prompt_id, extra, cached)
        for node_id in execution_order(prompt, outputs):
            entry = self.cache.get(signatures[node_id])
            if entry is None:
                entry = self._run_node(run, node_id)
                if entry is None:
                    break
                self.cache[signatures[node_id]] = entry
                run.executed.append(node_id)
            elif entry.ui:
                # A cached output node re-sends its cached UI (the old filenames).
                rt.to_client("executed", run.executed_message(node_id, entry.ui))
            run.values[node_id] = entry.outputs
            if entry.ui:
                run.record_ui(node_id, entry.ui)
        else:
            self._message("execution_success", {"prompt_id": prompt_id})
        rt.last_node_id = None
        return {"outputs": run.ui_outputs, "meta": run.meta}

    def _run_node(self, run: PromptRun, node_id: str) -> CacheEntry | None:
        rt = self.rt
        node = run.prompt[node_id]
        inputs = {
            name: run.values[value[0]][value[1]] if _is_link(value) else value
            for name, value in node["inputs"].items()
        }
        try:
            rt.check_interrupt()
            rt.progress_state(node_id, 0, 1, "running")
            rt.last_node_id = node_id
            executing = {"node": node_id, "display_node": node_id, "prompt_id": run.prompt_id}
            rt.to_client("executing", executing)
            call = NodeCall(node_id, inputs, run.prompt, run.extra, rt)
            outputs, ui = OPS[node["class_type"]](call)
        except InterruptProcessing:
            log.info("Processing interrupted")
            self.success = False
            mes = {
                "prompt_id": run.prompt_id,
                "node_id": node_id,
                "node_type": node["class_type"],
                "executed": list(run.executed),
            }
            self._message("execution_interrupted", mes, broadcast=True)
            return None
        except Exception as exc:
            self.success = False
            self._error(run, node_id, exc, inputs)
            return None
        rt.progress_state(node_id, 1, 1, "finished")
        if ui:
            rt.to_client("executed", run.executed_message(node_id, ui))
        return CacheEntry(outputs, ui)

    def _error(self, run: PromptRun, node_id: str, exc: Exception, inputs: dict[str, Any]) -> None:
        tb = traceback.format_tb(exc.__traceback__)
        if isinstance(exc, SimOutOfMemory | SimCudaOutOfMemory):
            # torch's message is just "Allocation on device "; ComfyUI appends its tip, logs,
            # and unloads every model before reporting.
            log.error("Got an OOM, unloading all loaded models. (%s)", exc)
            self.rt.residency.unload_all()
            message = f"Allocation on device \n{OOM_TIPS}"
            kind = "torch.OutOfMemoryError"
            tb.append(f"torch.OutOfMemoryError: simulated: {exc}\n")
        else:
            log.error("!!! Exception during processing !!! %s", exc)
            message = f"{exc}\n"
            module = type(exc).__module__
            qual = type(exc).__qualname__
            kind = qual if module == "builtins" else f"{module}.{qual}"
        self._message(
            "execution_error",
            {
                "prompt_id": run.prompt_id,
                "node_id": node_id,
                "node_type": run.prompt[node_id]["class_type"],
                "executed": list(run.executed),
                "exception_message": message,
                "exception_type": kind,
                "traceback": tb,
                "current_inputs": {k: [_format_value(v)] for k, v in inputs.items()},
                "current_outputs": list(run.cached),
            },
        )


class Worker(threading.Thread):
    """``prompt_worker``: take the next prompt, run it, record it, then act on /free flags."""

    def __init__(self, queue: PromptQueue, executor: Executor) -> None:
        super().__init__(name="prompt_worker", daemon=True)
        self.queue, self.executor = queue, executor
        self.stopping = threading.Event()

    def run(self) -> None:
        rt = self.executor.rt
        while not self.stopping.is_set():
            got = self.queue.get(timeout=0.5)
            if got is not None:
                item, task_id = got
                prompt_id = item[1]
                rt.last_prompt_id = prompt_id
                rt.progress_nodes = {}  # reset_progress_state: a new registry per prompt
                try:
                    result = self.executor.execute(item[2], prompt_id, item[3], item[4])
                except Exception:
                    # A simulator bug must not kill the worker silently: record it and go on.
                    log.exception("simulator error while executing %s", prompt_id)
                    self.executor.success = False
                    result = {"outputs": {}, "meta": {}}
                status = {
                    "status_str": "success" if self.executor.success else "error",
                    "completed": self.executor.success,
                    "messages": self.executor.messages,
                }
                self.queue.task_done(task_id, result, status)
                if rt.client_id is not None:
                    rt.send("executing", {"node": None, "prompt_id": prompt_id}, rt.client_id)
            self._flags()

    def _flags(self) -> None:
        flags = self.queue.take_flags()
        free_memory = flags.get("free_memory", False)
        if flags.get("unload_models", free_memory):
            sim_sleep(self.executor.rt.profile.durations.comfyui_free)
            freed = self.executor.rt.residency.unload_all()
            log.info("unloaded all models (%d bytes)", freed)
        if free_memory:
            self.executor.reset()
