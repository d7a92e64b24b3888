"""The exception every user-fixable problem derives from.

Raise a subclass with a one-line message that names the file, key or value and
says what to do; entry points print it without a traceback and exit non-zero.
"""

from __future__ import annotations

import errno

#: The errno values of a write that found no room: a full disk, a file size limit (ulimit -f), a quota.
DISK_FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


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


def describe_os_error(e: OSError) -> str:
    """One line for an operating-system error: the file, the cause (``strerror``), and what to do where that is
    clear (a full disk or file size limit, missing permissions)."""
    where = f"{e.filename}: " if e.filename is not None else ""
    cause = first_line(e)
    if e.errno in DISK_FULL:
        return f"{where}{cause}: the disk is full or a file size limit (ulimit -f) was reached; free space and rerun"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}{cause}: check the folder's permissions, or choose another output path"
    return f"{where}{cause}"
