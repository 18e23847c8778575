"""Domain errors of the runtimes: each says what happened (with numbers) and what to do next."""

from __future__ import annotations

from artcritic.failures import RuntimeFailure

__all__ = [
    "CriticAnswerInvalid",
    "CriticContextTooLong",
    "RuntimeFailure",
    "RuntimeHung",
    "RuntimeInterrupted",
    "RuntimeOutOfMemory",
    "RuntimeOutputInvalid",
    "RuntimeRejected",
    "RuntimeUnavailable",
]


class RuntimeUnavailable(RuntimeFailure):
    """The runtime cannot be reached, did not start, or stopped answering."""


class RuntimeHung(RuntimeUnavailable):
    """The runtime kept running work after it was told to stop: it is hung.

    Evidence, not assumption: the interrupt was sent and the runtime's own queue still
    showed the work running after the grace period. The coordinator recreates such a
    runtime (visibly) before the next job; ``cancelled`` says a person asked for the stop.
    """

    default_next_action = (
        "Nothing to do for a managed runtime: it is restarted before the next job. An "
        "external one must be restarted by whoever runs it."
    )

    def __init__(
        self, reason: str, next_action: str | None = None, *, runtime: str, cancelled: bool = False
    ) -> None:
        super().__init__(reason, next_action)
        self.runtime = runtime
        self.cancelled = cancelled


class RuntimeOutOfMemory(RuntimeFailure):
    """The runtime ran out of GPU memory. Never retried at lower settings."""

    default_next_action = (
        "Nothing was retried at lower settings. Re-run with a smaller batch or resolution, "
        "or ask an admin to raise the profile's reserve."
    )


class RuntimeRejected(RuntimeFailure):
    """The runtime refused the request as invalid (e.g. a model file it does not have)."""


class RuntimeOutputInvalid(RuntimeFailure):
    """The runtime answered, but not with what was asked for (count, size, decodable image)."""


class RuntimeInterrupted(RuntimeFailure):
    """The work was interrupted (cancelled by a user, or by the runtime)."""

    default_next_action = "Submit the request again if you still want it."


class CriticAnswerInvalid(RuntimeFailure):
    """The Critic's answer is not valid JSON for the verdict schema; no default score is used."""

    default_next_action = (
        "Retry the review; if it keeps failing, check the Critic model and its structured-output "
        "support with `manage.py runtime_doctor critic`."
    )


class CriticContextTooLong(RuntimeFailure):
    """The review prompt does not fit the Critic's context window."""

    default_next_action = (
        "Show the Critic fewer prior decisions or shorten the brief, or ask an admin to raise "
        "max_model_len in the profile (it costs KV-cache VRAM)."
    )
