"""The one error type of the robustness package: what a user asked for cannot be done."""

from __future__ import annotations


class RobustnessError(ValueError):
    """Bad parameters or an unusable model; the message is meant for the user (the CLI prints it, the
    service returns it as a 4xx)."""
