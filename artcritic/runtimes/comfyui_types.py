"""Plain values the ComfyUI client hands to its callers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ProgressKind = Literal["queued", "started", "cached", "node", "step", "executed", "done"]

# Node classes whose execution means "weights are being loaded" for the user.
LOADER_NODES = frozenset(
    {
        "CheckpointLoaderSimple",
        "UNETLoader",
        "DualCLIPLoader",
        "CLIPLoader",
        "VAELoader",
        "LoraLoader",
        "LoraLoaderModelOnly",
    }
)


def as_dict(value: object) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (server answers are untrusted)."""
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class ComfyProgress:
    """One step of a run, as the caller should show it.

    kinds: ``queued`` (accepted; ``queue_remaining`` set when known), ``started``,
    ``cached`` (``cached_nodes`` reused from ComfyUI's cache), ``node`` (a node
    starts: ``node``/``node_type``), ``step`` (sampler progress ``value``/``max``),
    ``executed`` (an output node saved ``filenames``), ``done`` (ComfyUI finished
    successfully; outputs are being fetched and checked next).
    """

    kind: ProgressKind
    prompt_id: str
    node: str | None = None
    node_type: str | None = None
    value: int | None = None
    max: int | None = None
    cached_nodes: tuple[str, ...] = ()
    filenames: tuple[str, ...] = ()
    queue_remaining: int | None = None

    @property
    def loading(self) -> bool:
        """True when a loader node starts (the phase the user knows as "loading")."""
        return self.kind == "node" and self.node_type in LOADER_NODES


@dataclass(frozen=True)
class ExpectedImages:
    """What a run must deliver: exactly ``count`` PNGs of ``width``×``height``."""

    count: int
    width: int
    height: int


@dataclass(frozen=True)
class OutputImage:
    """One checked output: the PNG bytes and where ComfyUI saved it."""

    data: bytes
    filename: str
    width: int
    height: int
    subfolder: str = ""
    type: str = "output"
