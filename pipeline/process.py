"""The process a stage runs in: how it stops on signals, notices its starter dying, and is recognised later.

Signals: SIGTERM and SIGHUP (``docker stop``, Slurm, CI cancellation, ``timeout``, a closed terminal) raise
:class:`pipeline.errors.Terminated` in the main thread, a :class:`KeyboardInterrupt`, so they take Ctrl-C's
path: the last checkpoint is kept and the tracking run is marked KILLED.  A second signal while the first is
being handled stops the process at once.  A forked child (a multiprocessing pool worker) starts with these signals
at their default action, so terminating a pool ends its workers at once and prints nothing: they are blocked
around the fork and the child resets them before unblocking.  Inheriting the Python-level handler instead lost
a signal that reached a child before the interpreter's after-fork cleanup (which clears pending handler calls):
such a worker slept in the pool's queue lock and ``Pool.join`` never returned (seen under CPU load).

Orphans: :func:`watch_starter` watches the process that started this one; when it is gone (``dvc repro`` itself
was terminated), this process gets SIGTERM instead of training on and writing outputs nobody waits for.
Intermediate shells (DVC may run each ``cmd`` through one) are looked through: what is watched is the nearest
ancestor that is not a shell.

Identity: :func:`start_ticks` and :func:`boot_id` tell a live process from a dead one or a reused process id
(the tracking tags of :mod:`pipeline.tracking.tags` use them).  Nothing happens at import time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from pipeline.errors import Terminated

#: Seconds between two looks at the starter process.
PARENT_POLL_SECONDS = 0.5
_SHELLS = {"sh", "dash", "bash", "zsh", "ksh", "fish", "busybox"}


def install_stop_signals() -> Callable[[], None]:
    """SIGTERM/SIGHUP raise :class:`Terminated` in the main thread, SIGINT :class:`KeyboardInterrupt`; a second
    signal exits at once.  Returns the function that puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    handled = (signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.getsignal(signum) for signum in (*handled, signal.SIGINT)}
    _deferred.update(stopping=False, pending=None)
    owner = os.getpid()

    def on_signal(signum, frame) -> None:
        if os.getpid() != owner:  # a child forked without the fork hooks (see _guard_forks): act as default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        name = signal.Signals(signum).name
        if _deferred["stopping"] or _deferred["pending"] is not None:  # already stopping: the user insists
            print(f"seqlab: {name} again: stopping now", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        if _deferred["depth"]:  # inside signals_deferred(): raised when the block ends
            _deferred["pending"] = signum
            return
        _raise_stop(signum)

    _guard_forks()
    _stop_handlers.add(on_signal)
    for signum in (*handled, signal.SIGINT):
        if signum == signal.SIGINT and previous[signum] is signal.SIG_IGN:
            continue  # started in the background with SIGINT ignored: keep it so
        signal.signal(signum, on_signal)

    def restore() -> None:
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)
        _stop_handlers.discard(on_signal)

    return restore


#: The handlers :func:`install_stop_signals` has put in place and not yet restored.
_stop_handlers: set[Callable] = set()
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
#: Per forking thread: (the signal mask before the fork, the stop signals it blocked), from before to after.
_forking = threading.local()
_fork_hooks: dict = {"registered": False}


def _guard_forks() -> None:
    """Make every later fork of this process start its child with the stop signals at their default action.

    A child that inherited :func:`install_stop_signals`'s handler would need its interpreter to run that handler;
    a signal arriving between ``fork()`` and the interpreter's after-fork cleanup is dropped there, so a pool
    worker terminated that early lived on.  So the signals are blocked in the forking thread around the fork,
    and the child sets them to ``SIG_DFL`` before unblocking: one sent meanwhile waits and then ends it."""
    if not _fork_hooks["registered"]:
        os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                            after_in_child=_after_fork_in_child)
        _fork_hooks["registered"] = True


def _before_fork() -> None:
    ours = [signum for signum in _STOP_SIGNALS if signal.getsignal(signum) in _stop_handlers]
    _forking.held = (signal.pthread_sigmask(signal.SIG_BLOCK, ours), ours) if ours else None


def _after_fork_in_parent() -> None:
    held, _forking.held = getattr(_forking, "held", None), None
    if held:
        signal.pthread_sigmask(signal.SIG_SETMASK, held[0])


def _after_fork_in_child() -> None:
    held, _forking.held = getattr(_forking, "held", None), None
    if held:
        mask, ours = held
        for signum in ours:
            signal.signal(signum, signal.SIG_DFL)
        _stop_handlers.clear()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


#: Signal state of this process: blocks deferring the stop, the signal they hold, whether a stop was raised.
_deferred: dict = {"depth": 0, "pending": None, "stopping": False}


def _raise_stop(signum: int) -> None:
    _deferred["stopping"] = True
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum, signal.Signals(signum).name)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold the stop that a signal handled by :func:`install_stop_signals` raises until the block has ended, for
    writes that must not be cut in the middle (a checkpoint: torch's writer would turn the interruption into a
    RuntimeError, indistinguishable from a full disk).  A second signal still exits at once."""
    _deferred["depth"] += 1
    try:
        yield
    finally:
        _deferred["depth"] -= 1
        pending = _deferred["pending"]
        if pending is not None and not _deferred["depth"]:
            _deferred["pending"] = None
            _raise_stop(pending)


# ---------------------------------------------------------------------------------------------- the end


def started_as(module: str) -> bool:
    """Whether this process is ``python -m <module>`` itself, with no profiler or tracer attached."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == module and sys.getprofile() is None and sys.gettrace() is None


def exit_now(code: int) -> None:
    """End a finished stage process without the interpreter's finalisation of modules and objects.

    Everything that writes runs first, in the interpreter's own order: other non-daemon threads are joined,
    the ``atexit`` handlers run (MLflow's, logging's, multiprocessing's) and stdout/stderr are flushed.  What is
    skipped frees memory only; with torch loaded it took 0.5-2.5 s of every stage (BENCHMARKS.md, "Where `make
    repro` spends its time").  Only for a process that :func:`started_as` a stage, never under a profiler.
    """
    import atexit

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be said
            stream.flush()
    os._exit(code)


# ---------------------------------------------------------------------------------------------- orphans


def watch_starter() -> Callable[[], None]:
    """Start a daemon thread that sends this process SIGTERM once its starter (see the module docstring) is
    gone; returns the function that stops the watch."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread() or not Path("/proc").is_dir():
        return stop.set
    chain = _starter_chain(os.getpid())
    me = os.getpid()

    def watch() -> None:
        while not stop.wait(PARENT_POLL_SECONDS):
            if os.getpid() != me:  # a forked child watches nothing
                return
            if any(start_ticks(pid) != ticks for pid, ticks in chain):
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
        chain.append((parent, start_ticks(parent)))
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


def start_ticks(pid: int) -> str | None:
    """The start time of a live process in clock ticks since boot (``/proc/<pid>/stat`` field 22); None once
    it has ended (zombies included) or where there is no ``/proc``."""
    fields = _stat_fields(pid)
    return fields[19] if fields and fields[0] not in ("Z", "X") else None


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def boot_id() -> str:
    """This machine's boot id (a new one after every reboot); "unknown" where there is no ``/proc``."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"
