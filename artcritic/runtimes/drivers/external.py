"""The external driver: a runtime someone else started; artcritic only checks its health.

The coordinator may still free, sleep and wake it through its HTTP API (the
clients do that); starting and stopping belong to whoever runs it.
"""

from __future__ import annotations

import logging

from artcritic.runtimes.drivers.base import (
    DriverKind,
    LaunchSpec,
    RuntimeNotStoppable,
    health_status,
    poll_healthy,
)
from artcritic.runtimes.errors import RuntimeUnavailable

log = logging.getLogger(__name__)


class ExternalDriver:
    """Health checks only; start() verifies it answers, stop() refuses."""

    def __init__(self, spec: LaunchSpec) -> None:
        self.spec = spec
        self.last_action = "nothing done yet"

    @property
    def kind(self) -> DriverKind:
        return "external"

    @property
    def can_start(self) -> bool:
        return False

    @property
    def url(self) -> str:
        return self.spec.url.rstrip("/")

    def fingerprint(self) -> str:
        return self.spec.fingerprint()

    def running_fingerprint(self) -> str | None:
        # Its settings are whatever its owner chose; there is nothing to compare.
        return None

    def start(self) -> None:
        """Succeed if it answers healthy now; otherwise say who must start it."""
        status = health_status(self.spec.health_url)
        if status == 200:
            self.last_action = "start: already up (external)"
            return
        answer = "no answer" if status is None else f"HTTP {status}"
        raise RuntimeUnavailable(
            f"{self.spec.runtime} on {self.spec.gpu} is external; start it yourself: "
            f"{self.spec.health_url} gave {answer}.",
            f"Start {self.spec.runtime} where it is managed (it must answer "
            f"{self.spec.health_url} with 200), or switch the profile to the docker or "
            "process driver so artcritic starts it.",
        )

    def stop(self, timeout: float = 30) -> None:
        """Always refuses: artcritic did not start it and will not stop it."""
        raise RuntimeNotStoppable(
            f"{self.spec.runtime} on {self.spec.gpu} is external (at {self.url}); artcritic "
            "cannot stop an external runtime, only free, sleep or wake it.",
            f"Stop or restart {self.spec.runtime} yourself where it was started.",
        )

    def is_running(self) -> bool:
        return health_status(self.spec.health_url) is not None

    def wait_healthy(self, timeout: float) -> None:
        poll_healthy(
            self.spec,
            timeout,
            exit_code=lambda: None,
            logs_tail=None,
            what=f"external at {self.url}",
        )
        self.last_action = f"healthy at {self.spec.health_url}"

    def logs_tail(self, lines: int = 40) -> str:
        return ""

    def describe(self) -> str:
        return (
            f"external runtime at {self.url} (started and stopped outside artcritic; logs are "
            f"where it runs); last: {self.last_action}"
        )
