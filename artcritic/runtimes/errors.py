"""Domain errors of the runtimes: each says what happened (with numbers) and what to do next."""

from __future__ import annotations

from artcritic.failures import RuntimeFailure

__all__ = [
    "CriticAnswerInvalid",
    "CriticContextTooLong",
    "RuntimeFailure",
    "RuntimeInterrupted",
    "RuntimeOutOfMemory",
    "RuntimeOutputInvalid",
    "RuntimeRejected",
    "RuntimeUnavailable",
]


class RuntimeUnavailable(RuntimeFailure):
    """The runtime cannot be reached, did not start, or stopped answering."""


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
