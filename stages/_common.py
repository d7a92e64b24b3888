"""What every entry point shares: turning user-fixable errors into one clear line and exit status 2.

This is the only place that decides how an error reaches a user.  Library code
raises domain exceptions (subclasses of ``ValueError``/``OSError`` with a message
that names the file or key and the fix); here they become ``seqlab: <message>``
on stderr and a non-zero exit, never a traceback.  Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from pipeline.errors import UserError


def run_main(body: Callable[[], int | None]) -> int:
    try:
        return int(body() or 0)
    except UserError as e:
        print(f"seqlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seqlab: interrupted", file=sys.stderr)
        return 130
