"""The one domain exception family, turned into an exit code and one line at the CLI boundary."""

from __future__ import annotations

__all__ = ["CheckFailed", "Interrupted", "MadeError", "UsageError"]


class MadeError(Exception):
    """A failure the user should read as one line; ``exit_code`` is what the command returns."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        # One line by construction: user input or library messages may carry newlines.
        super().__init__(" ".join(str(message).split()))


class UsageError(MadeError):
    """Bad usage, config or input: missing files or runs, wrong types, unreadable data."""

    exit_code = 2


class CheckFailed(MadeError):
    """A check (such as verify-ar) ran and found a violation."""

    exit_code = 1


class Interrupted(MadeError):
    """Training stopped by SIGINT or SIGTERM after saving: news, not an error; exit 130 or 143."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
