"""Errors of outbound calls that the agent turns into observations.

Defined below the tools, the policies and the HTTP helpers that raise them, so each can
raise the same type; ``tools.base`` re-exports it for backend authors (docs/extending.md).
"""

from __future__ import annotations


class BackendUnavailable(RuntimeError):
    """A backend cannot serve at all (missing key, server down). The message is shown to
    the policy as the observation, so it must never contain a secret."""
