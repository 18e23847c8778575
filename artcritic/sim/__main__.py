"""Start a simulator: ``python -m artcritic.sim {comfyui|critic|docker-engine} [options]``."""

from __future__ import annotations

import importlib
import sys

# Each simulator lives in its own module and exposes ``main(argv) -> int``.
SIMULATORS = {
    "comfyui": "artcritic.sim.comfyui",
    "critic": "artcritic.sim.critic",
    "docker-engine": "artcritic.sim.docker_engine",
}


def main(argv: list[str]) -> int:
    """Dispatch to the named simulator's ``main``; exit 2 with usage on a bad name."""
    if not argv or argv[0] not in SIMULATORS:
        names = "|".join(SIMULATORS)
        sys.stderr.write(f"usage: python -m artcritic.sim {{{names}}} [options]\n")
        return 2
    module = importlib.import_module(SIMULATORS[argv[0]])
    code: int = module.main(argv[1:])
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
