"""The exception every user-fixable problem derives from.

Raise a subclass with a one-line message that names the file, key or value and
says what to do; entry points print it without a traceback and exit non-zero.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad params, bad input file, no network, ...)."""
