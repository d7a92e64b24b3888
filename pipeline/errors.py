"""The exception every user-fixable problem derives from.

Raise a subclass with a one-line message that names the file, key or value and
says what to do; entry points print it without a traceback and exit non-zero.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad params, bad input file, no network, ...)."""


def first_line(error: BaseException) -> str:
    """What an error says in one line: an OS error's own words (``strerror``), else the first non-empty line of
    its message, else its type name."""
    text = getattr(error, "strerror", None) or next((line for line in str(error).splitlines() if line.strip()), "")
    return text.strip() or type(error).__name__


class SeqlabWarning(UserWarning):
    """Something the user should know that does not stop the stage (entry points print it as one line)."""


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal (SIGTERM, SIGHUP): handled like Ctrl-C, with its own exit code.

    A subclass of :class:`KeyboardInterrupt`, so every place that cleans up after Ctrl-C (keeping the last
    checkpoint, marking the tracking run KILLED) does the same for ``docker stop``, Slurm, CI cancellation and
    ``timeout``.
    """

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(f"terminated by {name}")
        self.signum, self.name = signum, name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
