"""Peak resident memory of one child process, measured so that the parent's own memory never counts.

``ru_maxrss`` (``os.wait4``, ``getrusage``) cannot serve here: Linux carries a process's high-water mark over
``exec`` from the image it replaces, so a child forked by a parent holding 2 GB (pytest with torch loaded,
a benchmark driver) reports at least 2 GB however little it used itself.  ``VmHWM`` in ``/proc/<pid>/status``
is the high-water mark of the child's own address space since its ``exec``; it is polled while the child runs
and the last reading kept (it only grows, so the last reading misses at most the final poll interval).
Like ``ru_maxrss`` it counts the pages of memory-mapped files the child touched.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

_HWM = re.compile(rb"VmHWM:\s+(\d+) kB")


@dataclass
class Measured:
    returncode: int
    seconds: float
    peak_rss_mb: float
    output: str


def _poll(pid: int, interval: float, peak: list[int], done: threading.Event) -> None:
    while not done.is_set():
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                found = _HWM.search(f.read())
        except OSError:
            return  # gone
        if found:
            peak[0] = max(peak[0], int(found.group(1)))
        done.wait(interval)


def run_measured(cmd: Sequence[str], *, interval: float = 0.02, **popen) -> Measured:
    """Run ``cmd`` to its end (stdout and stderr together in ``output``); its wall time and peak RSS in MiB."""
    start = time.perf_counter()
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)
    peak, done = [0], threading.Event()
    poller = threading.Thread(target=_poll, args=(proc.pid, interval, peak, done), daemon=True)
    poller.start()
    output = proc.communicate()[0].decode(errors="replace")
    done.set()
    poller.join()
    return Measured(proc.returncode, time.perf_counter() - start, peak[0] / 1024, output)
