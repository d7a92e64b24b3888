"""What every entry point shares: one clear line for every user-fixable error, and a clean stop on signals.

This is the only place that decides how an error reaches a user.  Library code raises domain exceptions
(subclasses of :class:`pipeline.errors.UserError` with a message that names the file or key and the fix);
here they become ``seqlab: error: <message>`` on stderr and exit status 2, never a traceback.  So do
operating-system errors (a full disk, a folder that cannot be written, a missing file): they name the file
and the cause.  Anything else is a bug and keeps its traceback.

Signals: Ctrl-C (SIGINT) ends a stage with exit 130; SIGTERM and SIGHUP (``docker stop``, Slurm, CI
cancellation, ``timeout``, a closed terminal) take the same path -- the last checkpoint is kept and the
tracking run is marked KILLED -- and end it with 128 + the signal number (143 for SIGTERM).  A second signal
while the first is being handled stops the process at once.

Orphans: a stage started by ``dvc repro`` (or any parent) watches the process that started it; when that
process is gone (``dvc repro`` itself was terminated), the stage stops as if it had received SIGTERM instead
of training on and writing outputs nobody waits for.  Intermediate shells (DVC runs each ``cmd`` through one)
are looked through: what is watched is the nearest ancestor that is not a shell.

Warnings meant for the user (:class:`pipeline.errors.SeqlabWarning`) print as one ``seqlab: warning:`` line.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import SeqlabWarning, Terminated, UserError

#: Seconds between two looks at the parent process.
PARENT_POLL_SECONDS = 0.5
_SHELLS = {"sh", "dash", "bash", "zsh", "ksh", "fish", "busybox"}
_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def option(*flags: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """One command-line option of a stage, as ``argparse.add_argument`` takes it; required unless it has a
    default, an action or optional arity."""
    if not ({"default", "action", "nargs"} & kwargs.keys()):
        kwargs["required"] = True
    return flags, kwargs


def stage_main(argv: Sequence[str] | None, doc: str | None, module: str, run: Callable[..., int | None],
               *options: tuple[tuple[str, ...], dict[str, Any]]) -> int:
    """Parse ``--params`` plus ``options`` and call ``run(params_path=..., <dest>=...)`` under :func:`run_main`.

    Every stage's ``main`` is this one call, so all of them take ``--params``, print ``--help`` from their
    module docstring, and end the same way on errors and signals.
    """
    parser = argparse.ArgumentParser(prog=f"python -m stages.{module}", description=doc)
    parser.add_argument("--params", dest="params_path", default="params.yaml",
                        help="params file (default: params.yaml)")
    for flags, kwargs in options:
        parser.add_argument(*flags, **kwargs)
    args = vars(parser.parse_args(argv))
    return run_main(lambda: run(**args))


def print_summary(stage: str, lines: dict[str, str]) -> None:
    """The lines a stage ends with: one ``<stage>: <name>: <text>`` per model, variant or corpus."""
    for name, text in lines.items():
        print(f"{stage}: {name}: {text}")


def run_main(body: Callable[[], int | None]) -> int:
    """Run a stage's ``body`` with the error, signal and orphan handling described in the module docstring."""
    restore = _install_signal_handlers()
    stop_watching = _watch_parent()
    previous_show = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return int(body() or 0)
    except UserError as e:
        _error(str(e))
        return 2
    except OSError as e:
        _error(describe_os_error(e))
        return 2
    except Terminated as e:
        print(f"seqlab: {e} (the last checkpoint is kept; the tracking run is marked KILLED)", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("seqlab: interrupted (the last checkpoint is kept; the tracking run is marked KILLED)", file=sys.stderr)
        return 130
    finally:
        stop_watching()
        warnings.showwarning = previous_show
        restore()


def describe_os_error(e: OSError) -> str:
    """One line for an operating-system error: the file, the cause, and what to do for a full disk."""
    where = e.filename if e.filename is not None else ""
    where = f"{where}: " if where else ""
    cause = e.strerror or str(e).splitlines()[0] if str(e) else type(e).__name__
    if e.errno in _FULL:
        return f"{where}{cause}: the disk is full or a file size limit (ulimit -f) was reached; free space and rerun"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}{cause}: check the folder's permissions, or choose another output path"
    return f"{where}{cause}"


def _error(message: str) -> None:
    print(f"seqlab: error: {' '.join(message.split())}", file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, SeqlabWarning):
        print(f"seqlab: warning: {message}", file=sys.stderr, flush=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


# ---------------------------------------------------------------------------------------------- signals


def _install_signal_handlers() -> Callable[[], None]:
    """SIGTERM/SIGHUP raise :class:`Terminated` in the main thread; a second signal exits at once."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    handled = (signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.getsignal(signum) for signum in (*handled, signal.SIGINT)}
    state = {"stopping": False}
    owner = os.getpid()

    def on_signal(signum, frame) -> None:
        if os.getpid() != owner:  # a forked worker (a multiprocessing pool) inherited the handler: act as default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        name = signal.Signals(signum).name
        if state["stopping"]:  # already cleaning up after a signal: the user insists
            print(f"seqlab: {name} again: stopping now", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        state["stopping"] = True
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum, name)

    for signum in (*handled, signal.SIGINT):
        if signum == signal.SIGINT and previous[signum] is signal.SIG_IGN:
            continue  # started in the background with SIGINT ignored: keep it so
        signal.signal(signum, on_signal)

    def restore() -> None:
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)

    return restore


# ---------------------------------------------------------------------------------------------- orphans


def _watch_parent() -> Callable[[], None]:
    """Start a daemon thread that sends this process SIGTERM once its starter (see module docstring) is gone;
    returns the function that stops the watch."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread() or not Path("/proc").is_dir():
        return stop.set
    chain = _starter_chain(os.getpid())
    me = os.getpid()

    def watch() -> None:
        while not stop.wait(PARENT_POLL_SECONDS):
            if os.getpid() != me:  # a forked child watches nothing
                return
            if any(_start_ticks(pid) != ticks for pid, ticks in chain):
                if not stop.is_set():
                    os.kill(me, signal.SIGTERM)
                return

    if chain:
        threading.Thread(target=watch, name="seqlab-parent-watch", daemon=True).start()
    return stop.set


def _starter_chain(pid: int) -> list[tuple[int, str | None]]:
    """(pid, start time) of the ancestors up to and including the nearest one that is not a shell."""
    chain = []
    parent = _parent(pid)
    while parent and parent > 1:
        chain.append((parent, _start_ticks(parent)))
        if _comm(parent) not in _SHELLS:
            break
        parent = _parent(parent)
    return chain


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _parent(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def _start_ticks(pid: int) -> str | None:
    """The start time of a live process (None once it has ended, zombies included)."""
    fields = _stat_fields(pid)
    return fields[19] if fields and fields[0] not in ("Z", "X") else None


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
