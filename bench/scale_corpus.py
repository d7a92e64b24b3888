"""bench/scale.py's measuring tools: the offline corpora, one stage as a measured child process, disk usage,
the machine's facts.

* Corpora: the ``.py`` files of a site-packages folder in sorted order, concatenated into one file of exactly
  the requested size (decimal units: 10MB = 10,000,000 bytes), valid UTF-8 (files that are not UTF-8 or hold a
  NUL byte are left out; the last file is cut at a character boundary and the file padded with newlines to the
  exact size).  Past the end of the folder the stream starts again from its first file (``wraps`` counts it).
  Built once into a cache folder; a file whose size and sha256 match its recorded ones is reused.
* :func:`run_measured`: one child process, its wall time, CPU seconds and peak RSS (the largest ``VmHWM`` of
  one process of its tree, sampled from ``/proc``; ``ru_maxrss`` is kept for reference), plus the
  peak of the summed RSS of its whole process tree (and of the anonymous part of it), sampled from ``/proc``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MB = 1_000_000
UNITS = {"B": 1, "KB": 1_000, "MB": MB, "GB": 1_000_000_000}
PAGE = os.sysconf("SC_PAGE_SIZE")
CHUNK = 1 << 22


# --------------------------------------------------------------------------- sizes


def parse_size(label: str) -> int:
    """``"100MB"`` -> 100_000_000 (decimal units B, KB, MB, GB)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?B)\s*", label.upper())
    if not match:
        raise ValueError(f"size {label!r}: write it as a number and a unit, e.g. 10MB, 100MB, 1GB")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def size_label(nbytes: int) -> str:
    """100_000_000 -> ``"100MB"`` (the largest unit that divides it)."""
    unit = next(u for u in ("GB", "MB", "KB", "B") if nbytes % UNITS[u] == 0)
    return f"{nbytes // UNITS[unit]}{unit}"


# --------------------------------------------------------------------------- corpora


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def python_files(root: Path) -> list[Path]:
    """Every ``.py`` file under ``root``, sorted by its path relative to ``root`` (a fixed order)."""
    return sorted((p for p in root.rglob("*.py") if p.is_file()), key=lambda p: p.relative_to(root).as_posix())


def _usable(data: bytes) -> bool:
    if b"\0" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _stream(files: list[Path], stats: dict[str, int]) -> Iterator[bytes]:
    """The files' bytes (each ending in a newline), over and over; ``stats`` counts files, skips and wraps."""
    usable: list[bool | None] = [None] * len(files)
    while True:
        yielded = False
        for i, path in enumerate(files):
            if usable[i] is False:
                continue
            try:
                data = path.read_bytes()
            except OSError:
                usable[i] = False
                continue
            if usable[i] is None:
                usable[i] = _usable(data)
                if not usable[i]:
                    stats["skipped_files"] += 1
                    continue
            if not data:
                continue
            stats["files_used"] += 1
            yielded = True
            yield data if data.endswith(b"\n") else data + b"\n"
        if not yielded:
            raise RuntimeError("no usable .py file in the source folder")
        stats["wraps"] += 1


def build_corpus(folder: Path, nbytes: int, source: Path) -> dict[str, Any]:
    """``folder/scale-<size>.txt`` of exactly ``nbytes`` bytes (reused when its size and sha256 match the record)."""
    folder.mkdir(parents=True, exist_ok=True)
    label = size_label(nbytes)
    path, meta_path = folder / f"scale-{label}.txt", folder / f"scale-{label}.json"
    if path.is_file() and meta_path.is_file():
        with contextlib.suppress(ValueError, OSError):
            meta = json.loads(meta_path.read_text())
            if meta.get("bytes") == nbytes == path.stat().st_size and sha256_file(path) == meta.get("sha256"):
                return {**meta, "reused": True}
    files = python_files(source)
    stats = {"files_used": 0, "skipped_files": 0, "wraps": 0}
    digest, written, start = hashlib.sha256(), 0, time.perf_counter()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        for data in _stream(files, stats):
            piece = data[: nbytes - written]
            if len(piece) < len(data):  # the last file: cut at a character boundary, pad to the exact size
                piece = piece.decode("utf-8", errors="ignore").encode("utf-8")
                piece += b"\n" * (nbytes - written - len(piece))
            out.write(piece)
            digest.update(piece)
            written += len(piece)
            if written >= nbytes:
                break
    os.replace(tmp, path)
    meta = {"path": str(path), "bytes": nbytes, "sha256": digest.hexdigest(), "source": str(source),
            "source_py_files": len(files), **stats, "build_s": round(time.perf_counter() - start, 2)}
    meta_path.write_text(json.dumps(meta, indent=1))
    return {**meta, "reused": False}


def python_bytes(source: Path) -> int:
    return sum(p.stat().st_size for p in python_files(source))


# --------------------------------------------------------------------------- a measured child process


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    return out


def tree_rss(pid: int) -> tuple[int, int, int]:
    """(RSS, anonymous RSS) in bytes summed over ``pid`` and its descendants, and the largest ``VmHWM`` (the
    high-water mark of one process since its exec) among them; zeros without /proc.

    ``VmHWM`` rather than ``ru_maxrss``: Linux carries ``ru_maxrss`` over exec from the forking parent, so a
    child of a large process reports the parent's size (see bench/peak_rss.py)."""
    total = anon = hwm = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{p}/statm") as f:
            fields = f.read().split()
            resident, shared = int(fields[1]) * PAGE, int(fields[2]) * PAGE
            total += resident
            anon += resident - shared
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{p}/status") as f:
            found = re.search(r"VmHWM:\s+(\d+) kB", f.read())
            hwm = max(hwm, int(found.group(1)) * 1024 if found else 0)
        todo += _children(p)
    return total, anon, hwm


def run_measured(cmd: list[str], cwd: Path, env: dict[str, str], log_stem: Path, timeout_s: float | None,
                 sample_s: float = 0.25) -> dict[str, Any]:
    """Run ``cmd``; stdout and stderr go to ``<log_stem>.out`` / ``.err``.  Returns rc, wall_s, cpu_s,
    peak_rss_mb (the largest one process's ``VmHWM``), wait4_maxrss_mb (``ru_maxrss``, for reference), tree_rss_mb / tree_anon_mb (sampled peaks), timed_out.  Past ``timeout_s`` the
    child gets SIGTERM (a stage ends its runs and exits 143), 30 s later SIGKILL.  On Ctrl-C here the child is
    stopped the same way before the KeyboardInterrupt goes on."""
    log_stem.parent.mkdir(parents=True, exist_ok=True)
    peak = peak_anon = peak_hwm = 0
    stopped_at: float | None = None
    timed_out = False
    with open(f"{log_stem}.out", "wb") as out, open(f"{log_stem}.err", "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        next_sample = start
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                now = time.perf_counter()
                if now >= next_sample:
                    rss, anon, hwm = tree_rss(proc.pid)
                    peak, peak_anon, peak_hwm = max(peak, rss), max(peak_anon, anon), max(peak_hwm, hwm)
                    next_sample = now + sample_s
                if timeout_s and stopped_at is None and now - start > timeout_s:
                    timed_out, stopped_at = True, now
                    os.kill(proc.pid, signal.SIGTERM)
                elif stopped_at is not None and now - stopped_at > 30:
                    os.kill(proc.pid, signal.SIGKILL)
                time.sleep(0.05)
        except BaseException:
            _stop(proc.pid)
            proc.returncode = -1
            raise
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(peak_hwm / MB, 1), "wait4_maxrss_mb": round(usage.ru_maxrss * 1024 / MB, 1),
            "tree_rss_mb": round(peak / MB, 1),
            "tree_anon_mb": round(peak_anon / MB, 1), "timed_out": timed_out}


def _stop(pid: int) -> None:
    """SIGTERM, up to 30 s for a clean exit, then SIGKILL; reaps the child."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, ChildProcessError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def tail(path: Path, lines: int = 12) -> list[str]:
    """The last ``lines`` non-empty lines of a log (progress-bar carriage returns split into lines)."""
    try:
        text = path.read_bytes()[-20000:].decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in re.split(r"[\r\n]+", text) if line.strip()][-lines:]


# --------------------------------------------------------------------------- disk and machine


def disk_usage(*paths: Path) -> dict[str, int]:
    """``{"bytes": apparent size of the files, "disk": allocated bytes with each inode counted once (a hard link
    shared between the paths too), "disk_per_link": allocated bytes counted once per link}``."""
    seen: set[tuple[int, int]] = set()
    total = {"bytes": 0, "disk": 0, "disk_per_link": 0}
    for path in paths:
        entries = [str(path)] if path.is_file() else [
            os.path.join(root, name) for root, _, names in os.walk(path) for name in names]
        for entry in entries:
            with contextlib.suppress(OSError):
                st = os.lstat(entry)
                total["disk_per_link"] += st.st_blocks * 512
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total["disk"] += st.st_blocks * 512
                    total["bytes"] += st.st_size
    return total


def machine_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {"nproc": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0))}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        flags = fields.get("Flags", "").split()
        facts.update(cpu=fields.get("Model name", "").strip(), avx512f="avx512f" in flags,
                     avx512_bf16="avx512_bf16" in flags, amx_bf16="amx_bf16" in flags)
    with contextlib.suppress(OSError, StopIteration, ValueError):
        line = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
        facts["memory_gb"] = round(int(line.split()[1]) * 1024 / 1e9, 1)
    from importlib import metadata

    for package in ("torch", "numpy", "dvc", "mlflow", "music21"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            facts[f"{package}_version"] = metadata.version(package)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        facts["tmp_filesystem"] = subprocess.run(["stat", "-f", "-c", "%T", "/tmp"], capture_output=True,
                                                 text=True, timeout=10).stdout.strip()
    return facts
