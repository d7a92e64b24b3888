"""How a stage and its tracking worker (:mod:`.worker`) talk: pickled frames on two pipes, and errors and
warnings in a form that the stage can read back without importing mlflow.

A frame is a 4-byte big-endian length and a pickle.  Requests are ``(request_id, op, pickled payload)``
(pickled apart, so that a payload the worker cannot load is an error answer, not a broken stream);
``request_id`` 0 asks for no reply.  Replies are ``(request_id, result, error, warnings)``.

An error crosses as the exception itself when its class is Python's own or seqlab's (a ``TrackingError`` stays a
``TrackingError``, an ``OSError`` keeps its errno and file name), else as its class name, message and the
worker's traceback (:class:`WorkerError` on the stage's side).  A warning crosses as its category's module and
name and its text; seqlab's categories are warned again as themselves in the stage.
"""

from __future__ import annotations

import importlib
import os
import pickle
import struct
import traceback
import warnings
from typing import Any

_HEADER = struct.Struct("!I")


class WorkerError(RuntimeError):
    """An error inside the tracking worker that is not a seqlab or Python error (a bug): its class, message and
    the worker's traceback."""


def write_frame(fd: int, message: Any) -> None:
    """Pickle ``message`` and write it to ``fd`` whole (raises ``BrokenPipeError`` once the reader is gone)."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(body)) + body)
    while view:
        view = view[os.write(fd, view):]


def read_frame(fd: int) -> Any:
    """The next message on ``fd``; ``EOFError`` when the writer closed its end (or died)."""
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size))
    return pickle.loads(_read_exact(fd, size))


def _read_exact(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _portable(cls: type) -> bool:
    return cls.__module__ == "builtins" or cls.__module__.split(".")[0] == "pipeline"


def pack_error(error: BaseException) -> tuple:
    """``("exception", error)`` when it can be unpickled by a stage without mlflow, else its description."""
    if _portable(type(error)):
        try:
            copy = pickle.loads(pickle.dumps(error))
            if type(copy) is type(error):
                return ("exception", error)
        except Exception:  # an exception whose arguments do not round-trip: described instead
            pass
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return ("described", f"{type(error).__module__}.{type(error).__qualname__}", str(error), text)


def unpack_error(packed: tuple) -> BaseException:
    if packed[0] == "exception":
        return packed[1]
    _, name, message, text = packed
    error = WorkerError(f"{name}: {message}")
    error.add_note(f"in the tracking worker:\n{text.rstrip()}")
    return error


def pack_warnings(caught: list[warnings.WarningMessage]) -> list[tuple[str, str, str]]:
    return [(w.category.__module__, w.category.__qualname__, str(w.message)) for w in caught]


def rewarn(packed: list[tuple[str, str, str]]) -> None:
    """Warn again, in the stage, what the worker warned: seqlab's categories as themselves, others as
    ``UserWarning`` naming their category."""
    for module, name, text in packed:
        category: type[Warning] = UserWarning
        if module.split(".")[0] == "pipeline":
            found = getattr(importlib.import_module(module), name, None)
            if isinstance(found, type) and issubclass(found, Warning):
                category = found
        else:
            text = f"{name}: {text}"
        warnings.warn(text, category, stacklevel=3)
