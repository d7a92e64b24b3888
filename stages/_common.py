"""What every entry point shares: one clear line for every user-fixable error, and a clean stop on signals.

This is the only place that decides how an error reaches a user.  Library code raises domain exceptions
(subclasses of :class:`pipeline.errors.UserError` with a message that names the file or key and the fix);
here they become ``seqlab: error: <message>`` on stderr and exit status 2, never a traceback.  So do
operating-system errors (a full disk, a folder that cannot be written, a missing file): they name the file
and the cause.  Anything else is a bug and keeps its traceback.

Signals and orphans (:mod:`pipeline.process`): Ctrl-C ends a stage with exit 130; SIGTERM and SIGHUP take
the same path and end it with 128 + the signal number (143 for SIGTERM); a stage whose starter (``dvc repro``)
is gone stops as on SIGTERM.

Warnings meant for the user (:class:`pipeline.errors.SeqlabWarning`) print as one ``seqlab: warning:`` line.

Tracking: a stage keeps its MLflow runs in its own process (:func:`pipeline.tracking.factory.open_tracker`) and
ends them with :func:`pipeline.tracking.lifecycle.tracked_run`, which waits until every point is written (for a
bounded time when the store is down: :mod:`pipeline.tracking.mlflow_tracker`); an error, Ctrl-C or SIGTERM that
leaves the body has already ended its runs FAILED or KILLED, wherever the store answered.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.config import load_params
from pipeline.errors import SeqlabWarning, Terminated, UserError, describe_os_error
from pipeline.process import exit_now, install_stop_signals, started_as, watch_starter


def option(*flags: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """One command-line option of a stage, as ``argparse.add_argument`` takes it; required unless it has a
    default, an action or optional arity."""
    if not ({"default", "action", "nargs"} & kwargs.keys()):
        kwargs["required"] = True
    return flags, kwargs


def stage_main(argv: Sequence[str] | None, doc: str | None, module: str, run: Callable[..., int | None],
               *options: tuple[tuple[str, ...], dict[str, Any]], requires: tuple[str, ...] = (),
               stop_note: str = "") -> int:
    """Parse ``--params`` plus ``options``, read and validate the params file once (the sections in
    ``requires`` must be there) and call ``run(params=<Params>, <dest>=...)``, all under :func:`run_main`.

    Every stage's ``main`` is this one call, so all of them take ``--params``, print ``--help`` from their
    module docstring, stop on bad params with one line (exit 2) before any work, and end the same way on
    errors and signals.  This is the one place a stage reads ``params.yaml``.
    """
    parser = argparse.ArgumentParser(prog=f"python -m stages.{module}", description=doc)
    parser.add_argument("--params", dest="params_path", default="params.yaml",
                        help="params file (default: params.yaml)")
    for flags, kwargs in options:
        parser.add_argument(*flags, **kwargs)
    args = vars(parser.parse_args(argv))
    params_path = args.pop("params_path")
    code = run_main(lambda: run(params=load_params(params_path, required=requires), **args), stop_note=stop_note)
    if started_as(f"stages.{module}"):
        exit_now(code)
    return code


def print_summary(stage: str, lines: dict[str, str]) -> None:
    """The lines a stage ends with: one ``<stage>: <name>: <text>`` per model, variant or corpus."""
    for name, text in lines.items():
        print(f"{stage}: {name}: {text}")


def run_main(body: Callable[[], int | None], stop_note: str = "") -> int:
    """Run a stage's ``body`` with the error, signal and orphan handling described in the module docstring;
    ``stop_note`` ends the line printed on a signal, saying what the stage leaves behind (train: its checkpoint)."""
    restore = install_stop_signals()
    stop_watching = watch_starter()
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
        print(f"seqlab: {e}{f' ({stop_note})' if stop_note else ''}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"seqlab: interrupted{f' ({stop_note})' if stop_note else ''}", file=sys.stderr)
        return 130
    finally:
        stop_watching()
        warnings.showwarning = previous_show
        restore()


def _error(message: str) -> None:
    print(f"seqlab: error: {' '.join(message.split())}", file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, SeqlabWarning):
        print(f"seqlab: warning: {message}", file=sys.stderr, flush=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
