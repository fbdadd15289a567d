"""The one domain exception family, turned into an exit code and one line at the CLI boundary."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["BadArgument", "CheckFailed", "Interrupted", "MadeError", "UsageError"]


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


class BadArgument(UsageError):
    """A function's argument was refused. It names the arguments by their Python names; the
    CLI, which alone knows how options are spelt, words them as its options."""

    def __init__(self, arguments: str | tuple[str, ...], problem: str) -> None:
        self.arguments = (arguments,) if isinstance(arguments, str) else arguments
        self.problem = problem
        super().__init__(f"{' and '.join(self.arguments)} {problem}")

    def worded(self, spell: Callable[[str], str]) -> str:
        """The message with each argument as ``spell`` writes it (e.g. per_image -> --per-image)."""
        return " ".join(f"{' and '.join(spell(a) for a in self.arguments)} {self.problem}".split())
