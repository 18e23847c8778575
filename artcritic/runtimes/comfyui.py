"""Synchronous ComfyUI client (requests + websocket-client), speaking protocols.md Part 1.

``run`` opens the websocket with its own clientId first, submits the graph with
its own prompt_id, reports progress, falls back to polling ``/history/{id}``
when the socket drops, honours cancellation with a targeted ``/interrupt``, and
returns only images that are exactly what was expected. Every HTTP call has a
timeout; every failure is a domain error with a reason and a next action.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import requests
import websocket

from artcritic.runtimes.comfyui_errors import (
    failure_from_event,
    failure_from_history,
    rejection_from_response,
)
from artcritic.runtimes.comfyui_events import RunWatch
from artcritic.runtimes.comfyui_outputs import image_refs, outputs_check
from artcritic.runtimes.comfyui_types import ComfyProgress, ExpectedImages, OutputImage, as_dict
from artcritic.runtimes.errors import (
    RuntimeFailure,
    RuntimeHung,
    RuntimeInterrupted,
    RuntimeOutputInvalid,
    RuntimeRejected,
    RuntimeUnavailable,
)

__all__ = ["ComfyClient", "ComfyProgress", "ExpectedImages", "OutputImage"]

POLL_SECONDS = 0.5  # how often history is polled (socket gone) and cancel_check is asked
CANCEL_GRACE_SECONDS = 15.0  # how long to wait for ComfyUI to confirm an interrupt
UNAVAILABLE_NEXT = (
    "Start ComfyUI or check the profile's URL, then retry; "
    "`manage.py runtime_doctor comfyui --url URL` shows what is wrong."
)


class ComfyClient:
    """One ComfyUI server at ``base_url``; ``timeout`` bounds every single HTTP call."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def close(self) -> None:
        """Close pooled HTTP connections."""
        self.session.close()

    def __enter__(self) -> ComfyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP plumbing ----------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None
    ) -> requests.Response:
        url = f"{self.base_url}{path}"
        try:
            return self.session.request(method, url, json=body, params=params, timeout=self.timeout)
        except requests.Timeout:
            raise RuntimeUnavailable(
                f"ComfyUI at {self.base_url} did not answer {method} {path} within "
                f"{self.timeout:g} s.",
                UNAVAILABLE_NEXT,
            ) from None
        except requests.RequestException as exc:
            refused = "refused" in str(exc).lower()
            what = (
                "refused the connection" if refused else f"cannot be reached ({type(exc).__name__})"
            )
            raise RuntimeUnavailable(
                f"ComfyUI at {self.base_url} {what} for {method} {path}.", UNAVAILABLE_NEXT
            ) from None

    def _ok(self, response: requests.Response, method: str, path: str) -> requests.Response:
        if response.status_code != 200:
            raise RuntimeFailure(
                f"ComfyUI answered {method} {path} with HTTP {response.status_code}: "
                f"{response.text[:200]!r}.",
                "Check that the URL points at ComfyUI and read its log.",
            )
        return response

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        return self._decode(
            self._ok(self._request(method, path, body=body), method, path), method, path
        )

    @staticmethod
    def _decode(response: requests.Response, method: str, path: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise RuntimeFailure(
                f"ComfyUI answered {method} {path} with something that is not JSON: "
                f"{response.text[:120]!r}.",
                "Check that the URL points at ComfyUI, not another web server.",
            ) from None

    def _dict(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = self._json(method, path, body)
        if not isinstance(data, dict):
            raise RuntimeFailure(
                f"ComfyUI answered {method} {path} with {type(data).__name__}, not an object.",
                "Check that the URL points at ComfyUI.",
            )
        return data

    # -- simple calls -------------------------------------------------------------------

    def system_stats(self) -> dict[str, Any]:
        """``GET /system_stats``: versions, argv, devices with VRAM in bytes."""
        return self._dict("GET", "/system_stats")

    def queue(self) -> dict[str, Any]:
        """``GET /queue``: ``queue_running`` and ``queue_pending`` item lists."""
        return self._dict("GET", "/queue")

    def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """``GET /object_info[/{class}]``; ``{}`` when the class is unknown."""
        return self._dict("GET", f"/object_info/{node_class}" if node_class else "/object_info")

    def models(self, folder: str) -> list[str]:
        """``GET /models/{folder}``: file names ComfyUI sees in that model folder."""
        path = f"/models/{folder}"
        response = self._request("GET", path)
        if response.status_code == 404:
            raise RuntimeRejected(f"ComfyUI has no model folder {folder!r}.")
        data = self._decode(self._ok(response, "GET", path), "GET", path)
        if not isinstance(data, list) or not all(isinstance(n, str) for n in data):
            raise RuntimeFailure(f"ComfyUI's GET {path} is not a list of file names.")
        return list(data)

    def free(self, *, unload_models: bool = True, free_memory: bool = True) -> None:
        """``POST /free``: sets flags only; poll ``vram_free_bytes`` to see memory come back."""
        body = {"unload_models": unload_models, "free_memory": free_memory}
        self._ok(self._request("POST", "/free", body=body), "POST", "/free")

    def interrupt(self, prompt_id: str | None = None) -> None:
        """``POST /interrupt``: only that prompt if it is running, or whatever runs."""
        body = {"prompt_id": prompt_id} if prompt_id else {}
        self._ok(self._request("POST", "/interrupt", body=body), "POST", "/interrupt")

    def queue_delete(self, prompt_id: str) -> None:
        """``POST /queue {"delete": [id]}``: drop it if still pending (a running one stays)."""
        self._ok(self._request("POST", "/queue", body={"delete": [prompt_id]}), "POST", "/queue")

    def history(self, prompt_id: str) -> dict[str, Any]:
        """The prompt's history entry, or ``{}`` while it has not finished."""
        data = self._dict("GET", f"/history/{prompt_id}")
        entry = data.get(prompt_id, {})
        return entry if isinstance(entry, dict) else {}

    def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        """``GET /view``: the bytes of one saved file."""
        params = {"filename": filename, "subfolder": subfolder, "type": type}
        response = self._request("GET", "/view", params=params)
        if response.status_code == 404:
            raise RuntimeOutputInvalid(
                f"ComfyUI lists {subfolder}/{filename} ({type}) as an output but has no such file.",
                "Nothing was stored. Re-run the job; check ComfyUI's output folder.",
            )
        if response.status_code in (400, 403):
            raise RuntimeRejected(
                f"ComfyUI refused to serve {subfolder}/{filename} ({type}): "
                f"HTTP {response.status_code}."
            )
        return self._ok(response, "GET", "/view").content

    def version(self) -> str:
        """ComfyUI's version from ``/system_stats`` ("" when it does not say)."""
        system = self.system_stats().get("system")
        found = system.get("comfyui_version") if isinstance(system, dict) else None
        return found.strip()[:64] if isinstance(found, str) else ""

    def vram_free_bytes(self) -> int:
        """Free VRAM of ComfyUI's primary device, from ``/system_stats`` (bytes).

        On ``--cpu`` the one device is of type "cpu" and its ``vram_free`` is system RAM:
        that is refused rather than passed off as VRAM.
        """
        stats = self.system_stats()
        devices = stats.get("devices")
        first = devices[0] if isinstance(devices, list) and devices else None
        if isinstance(first, dict) and on_cpu(stats):
            raise RuntimeFailure(
                f"ComfyUI at {self.base_url} runs on the CPU (--cpu): its device "
                f"{first.get('name')!r} reports system RAM as 'vram', so GPU memory cannot be "
                "verified through it.",
                "Start ComfyUI without --cpu on the GPU this profile describes, or use a profile "
                "for a CPU-only ComfyUI.",
            )
        free = first.get("vram_free") if isinstance(first, dict) else None
        if not isinstance(free, int) or isinstance(free, bool) or free < 0:
            raise RuntimeFailure(
                "ComfyUI's /system_stats reports no devices[0].vram_free; released memory cannot "
                "be verified.",
                "Check that ComfyUI runs on the GPU (not --cpu).",
            )
        return free

    # -- a whole run ----------------------------------------------------------------------

    def run(
        self,
        graph: dict[str, Any],
        *,
        on_event: Callable[[ComfyProgress], None],
        expected: ExpectedImages,
        timeout: float,
        cancel_check: Callable[[], bool] | None = None,
    ) -> list[OutputImage]:
        """Run ``graph`` to completion and return its checked images (see module docstring)."""
        deadline = time.monotonic() + timeout
        client_id = uuid.uuid4().hex
        ws = self._ws_open(client_id)
        try:
            prompt_id = self._submit(graph, client_id, str(uuid.uuid4()))
            watch = RunWatch(graph, prompt_id, on_event)
            on_event(ComfyProgress("queued", prompt_id))
            try:
                entry = self._wait(ws, watch, deadline, timeout, cancel_check)
            except (RuntimeUnavailable, RuntimeInterrupted):
                raise
            except BaseException:
                # The caller's callback or the process failed: do not leave the GPU busy.
                self._abandon(prompt_id)
                raise
        finally:
            ws.close()
        status = as_dict(entry.get("status"))
        if status.get("status_str") != "success":
            raise failure_from_history(entry) if status else _watch_failure(watch)
        on_event(ComfyProgress("done", prompt_id))
        refs = image_refs(entry, list(graph))
        downloads = [
            (ref, self.view(ref["filename"], ref["subfolder"], ref["type"])) for ref in refs
        ]
        return outputs_check(downloads, expected)

    def _ws_open(self, client_id: str) -> websocket.WebSocket:
        scheme = "wss" if self.base_url.startswith("https") else "ws"
        url = f"{scheme}://{self.base_url.split('://', 1)[-1]}/ws?clientId={client_id}"
        try:
            ws = websocket.create_connection(url, timeout=self.timeout)
        except (OSError, websocket.WebSocketException) as exc:
            raise RuntimeUnavailable(
                f"ComfyUI's websocket at {url} cannot be opened: {exc}.", UNAVAILABLE_NEXT
            ) from None
        ws.settimeout(POLL_SECONDS)
        return ws

    def _submit(self, graph: dict[str, Any], client_id: str, prompt_id: str) -> str:
        body = {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}
        response = self._request("POST", "/prompt", body=body)
        if response.status_code == 400:
            try:
                raise rejection_from_response(response.json())
            except ValueError:
                raise rejection_from_response(response.text) from None
        data = self._decode(self._ok(response, "POST", "/prompt"), "POST", "/prompt")
        accepted = data.get("prompt_id") if isinstance(data, dict) else None
        if not isinstance(accepted, str):
            raise RuntimeFailure(
                f"ComfyUI accepted the workflow without a prompt_id: {data!r:.200}."
            )
        if data.get("node_errors"):
            # Part of the graph was dropped; we never run a partially validated workflow.
            self._abandon(accepted)
            raise rejection_from_response(data)
        return accepted

    def _abandon(self, prompt_id: str) -> None:
        try:
            self.queue_delete(prompt_id)
            self.interrupt(prompt_id)
        except RuntimeFailure:
            pass  # best effort: the server may be gone, which is reported elsewhere

    def _wait(
        self,
        ws: websocket.WebSocket,
        watch: RunWatch,
        deadline: float,
        timeout: float,
        cancel_check: Callable[[], bool] | None,
    ) -> dict[str, Any]:
        cancelled_at: float | None = None
        socket_open = True
        last_seen_check = last_cancel_check = time.monotonic()
        while True:
            now = time.monotonic()
            # cancel_check may read the database: ask at most once per poll interval.
            if (
                cancel_check is not None
                and cancelled_at is None
                and now - last_cancel_check >= POLL_SECONDS
            ):
                last_cancel_check = now
                if cancel_check():
                    self._abandon(watch.prompt_id)
                    cancelled_at = now
            if cancelled_at is not None and now - cancelled_at > CANCEL_GRACE_SECONDS:
                raise self._cancel_unconfirmed(watch)
            if now > deadline:
                raise self._overrun(watch, timeout)
            if socket_open:
                socket_open = _receive(ws, watch)
                if watch.finished:
                    return self._history_after_done(watch)
                if socket_open and cancelled_at is None:
                    continue
            else:
                time.sleep(POLL_SECONDS)
            try:
                entry = self.history(watch.prompt_id)
                if entry:
                    return entry
                if now - last_seen_check > 2 * POLL_SECONDS:
                    last_seen_check = now
                    self._check_known(watch, cancelled=cancelled_at is not None)
            except RuntimeUnavailable as exc:
                raise RuntimeUnavailable(
                    f"ComfyUI stopped answering during the run (last event: {watch.last}). "
                    f"{exc.reason}",
                    exc.next_action,
                ) from None

    def _cancel_unconfirmed(self, watch: RunWatch) -> RuntimeFailure:
        """The failure for a cancel ComfyUI did not confirm: hung if the prompt still runs."""
        if self._still_running(watch.prompt_id):
            return RuntimeHung(
                f"Cancelled, but ComfyUI still runs prompt {watch.prompt_id} "
                f"{CANCEL_GRACE_SECONDS:g} s after /interrupt (last event: {watch.last}): "
                "it is hung.",
                runtime="comfyui",
                cancelled=True,
            )
        return RuntimeInterrupted(
            f"Cancelled; ComfyUI did not confirm the interrupt within "
            f"{CANCEL_GRACE_SECONDS:g} s (last event: {watch.last})."
        )

    def _overrun(self, watch: RunWatch, timeout: float) -> RuntimeFailure:
        """Past the run's deadline: interrupt, then say whether ComfyUI stopped or is hung."""
        self._abandon(watch.prompt_id)
        if self._stopped_within(watch.prompt_id, CANCEL_GRACE_SECONDS):
            return RuntimeUnavailable(
                f"ComfyUI did not finish the workflow within {timeout:g} s (last event: "
                f"{watch.last}); it was interrupted and stopped.",
                "Check ComfyUI's log and the GPU; `manage.py runtime_doctor comfyui` runs a "
                "small test workflow.",
            )
        return RuntimeHung(
            f"ComfyUI did not finish the workflow within {timeout:g} s (last event: "
            f"{watch.last}), and {CANCEL_GRACE_SECONDS:g} s after /interrupt prompt "
            f"{watch.prompt_id} still runs: ComfyUI is hung.",
            "Nothing was retried. ComfyUI is restarted before the next job; re-run this one "
            "when it is back (check ComfyUI's log if it hangs again).",
            runtime="comfyui",
        )

    def _still_running(self, prompt_id: str) -> bool:
        """Whether ComfyUI's queue shows ``prompt_id`` running; True when it cannot say."""
        try:
            running = self.queue().get("queue_running") or []
        except RuntimeFailure:
            return True
        return any(
            isinstance(item, list) and len(item) > 1 and item[1] == prompt_id for item in running
        )

    def _stopped_within(self, prompt_id: str, seconds: float) -> bool:
        """Evidence that an interrupt took: the prompt left the running queue in time."""
        deadline = time.monotonic() + seconds
        while self._still_running(prompt_id):
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    def _history_after_done(self, watch: RunWatch) -> dict[str, Any]:
        # History is written before ComfyUI announces the end, so it is there now.
        entry = self.history(watch.prompt_id)
        if not entry:
            raise RuntimeFailure(
                f"ComfyUI announced the end of prompt {watch.prompt_id} but has no history for it.",
                "Re-run the job; if it repeats, check ComfyUI's --max-history setting.",
            )
        return entry

    def _check_known(self, watch: RunWatch, *, cancelled: bool) -> None:
        """Fail fast when the prompt is neither queued, running nor finished."""
        data = self.queue()
        items = (data.get("queue_running") or []) + (data.get("queue_pending") or [])
        if any(isinstance(i, list) and len(i) > 1 and i[1] == watch.prompt_id for i in items):
            return
        if self.history(watch.prompt_id):
            return
        if cancelled:
            raise RuntimeInterrupted("Cancelled before ComfyUI started the workflow.")
        raise RuntimeUnavailable(
            f"ComfyUI lost prompt {watch.prompt_id}: it is neither queued, running nor in its "
            "history (the server probably restarted).",
            "Re-run the job.",
        )


def on_cpu(stats: dict[str, Any]) -> bool:
    """Whether /system_stats describes a ComfyUI started with --cpu (device type cpu)."""
    devices = stats.get("devices")
    first = devices[0] if isinstance(devices, list) and devices else None
    system = stats.get("system")
    argv = system.get("argv") if isinstance(system, dict) else None
    typed_cpu = isinstance(first, dict) and first.get("type") == "cpu"
    return typed_cpu or (isinstance(argv, list) and "--cpu" in argv)


def _receive(ws: websocket.WebSocket, watch: RunWatch) -> bool:
    """Read one frame into ``watch``; False when the socket is gone."""
    try:
        opcode, data = ws.recv_data()
    except websocket.WebSocketTimeoutException:
        return True
    except (websocket.WebSocketException, OSError):
        return False
    if opcode == websocket.ABNF.OPCODE_CLOSE:
        return False
    if opcode == websocket.ABNF.OPCODE_TEXT:
        watch.text(data.decode("utf-8", "replace"))
    # Binary frames are previews (and text-progress frames): not needed here.
    return True


def _watch_failure(watch: RunWatch) -> RuntimeFailure:
    if watch.failure is not None:
        return failure_from_event(*watch.failure)
    return RuntimeFailure("ComfyUI's history entry has no status.", "Read ComfyUI's log.")
