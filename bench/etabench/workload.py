"""What bench-eta submits: seeded waves of batches and interactive singles.

Pure and deterministic: the same seed gives the same waves, so the cold and the warm pass
run the same work. A wave arrives at once, in a seeded order (an interactive single may
arrive after a batch it then overtakes, as in a real studio); the next wave comes when
the GPU has finished the last one and every review it queued.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

PROJECTS = ("Lamp concepts", "Chair studies", "Kettle redesign")
PROMPTS = (
    "a brushed aluminium desk lamp, studio light",
    "an oak lounge chair with a cane back, three-quarter view",
    "a matte ceramic kettle with a cork handle, on linen",
    "a folding steel stool, exploded view",
    "a pendant lamp of pleated paper, warm light",
)
# (model mode, width, height, steps): sizes and steps designers pick on sim-32gb.
SHAPES = (
    ("flux-dev-fp8", 1024, 1024, 20),
    ("flux-dev-fp8", 768, 768, 16),
    ("sdxl", 1024, 1024, 25),
    ("sdxl", 768, 768, 20),
)


@dataclass(frozen=True)
class Submission:
    """One request, as a designer submits it."""

    wave: int
    project: int
    text: str
    model_mode: str
    width: int
    height: int
    steps: int
    count: int
    seed_policy: str
    seed: int


def waves_build(
    seed: int,
    *,
    waves: int = 6,
    batches: tuple[int, int] = (2, 3),
    singles: tuple[int, int] = (1, 2),
) -> list[list[Submission]]:
    """``waves`` waves, each of ``batches`` batches (2–4 images) and ``singles`` singles."""
    rng = random.Random(seed)
    built = []
    for wave in range(waves):
        items = []
        for kind in ["batch"] * rng.randint(*batches) + ["single"] * rng.randint(*singles):
            mode, width, height, steps = rng.choice(SHAPES)
            items.append(
                Submission(
                    wave=wave,
                    project=rng.randrange(len(PROJECTS)),
                    text=rng.choice(PROMPTS),
                    model_mode=mode,
                    width=width,
                    height=height,
                    steps=steps,
                    count=rng.randint(2, 4) if kind == "batch" else 1,
                    # Fixed seeds render a batch as one prompt; increment, one per image.
                    seed_policy=rng.choice(("fixed", "increment")),
                    seed=rng.randrange(1, 2**31),
                )
            )
        rng.shuffle(items)
        built.append(items)
    return built
