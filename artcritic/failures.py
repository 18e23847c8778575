"""The failure contract every layer speaks: what happened, with numbers, and the next safe action.

It sits at the bottom so that GPU policy (NVML), the runtimes' clients and drivers, and the
jobs that run them raise and catch one base class.
"""

from __future__ import annotations


class RuntimeFailure(Exception):
    """Base of every runtime error: ``reason`` for the user, ``next_action`` they can take."""

    default_next_action = "Check the runtime with `manage.py runtime_doctor`, then re-run the job."

    def __init__(self, reason: str, next_action: str | None = None) -> None:
        self.reason = reason
        self.next_action = next_action or self.default_next_action
        super().__init__(reason)
