"""Where `make repro` spends its time: a per-stage wall-time table taken from DVC's own run.

Clones the repository's HEAD into a scratch folder (a fresh clone, as a new user has it), runs the
README's pipeline command there (``make repro``: virtual environment, install, ``dvc repro``), and stamps
every line DVC prints with the time it arrived.  A stage's wall time runs from its ``Running stage '...'``
line to the next stage's (or to the end); the time before the first stage is the set-up (venv and install).
For every training stage the ``train_seconds`` of its ``metrics.json`` splits the wall time into training
and everything else (start-up, thread probe, validation, checkpoints, tracking, model logging).  The
``cores`` column is the machine's busy CPU time during the stage over its wall time (``/proc/stat``, all
processes: 2.0 on a 2-core machine is both cores busy, 1.0 is one core idle).

    python bench/repro_stages.py                        # fresh clone of HEAD, make repro, table
    python bench/repro_stages.py --rev a7c920b          # the same for an earlier commit (a baseline)
    python bench/repro_stages.py --venv .venv           # reuse an installed venv: dvc repro only
    python bench/repro_stages.py --env ONEDNN_MAX_CPU_ISA=AVX2 --json out.json
    python bench/repro_stages.py --keep-venv             # keep the clone's .venv (removed by default: ~2 GB)

``--env`` passes settings to every stage, for example the oneDNN/MKL/ATen ISA caps that make an
AVX-512 machine compute like an AVX2-only one.  The machine is shared: the script prints the load average
at the start and at the end; run it on quiet cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNNING = re.compile(r"Running stage '([^']+)'")
# The settings that make oneDNN, MKL and ATen use only AVX2 (an AVX2-only CPU, as far as the kernels go).
AVX2 = ("ONEDNN_MAX_CPU_ISA=AVX2", "MKL_ENABLE_INSTRUCTIONS=AVX2", "ATEN_CPU_CAPABILITY=avx2")


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot, summed over its CPUs (0.0 without /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(v) for v in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def timeline(cmd: list[str], cwd: Path, env: dict[str, str], log: Path
             ) -> tuple[list[tuple[float, str, float]], float, int, float]:
    """Run ``cmd``; return (seconds since start, stage name, busy CPU seconds since start) per stage start,
    total seconds, exit code and total busy CPU seconds."""
    starts: list[tuple[float, str, float]] = []
    start, busy0 = time.perf_counter(), busy_seconds()
    with log.open("w") as out, subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter() - start
            out.write(f"{now:9.2f} {line}")
            match = RUNNING.search(line)
            if match:
                starts.append((now, match.group(1), busy_seconds() - busy0))
                print(f"{now:7.1f} s  {match.group(1)}", flush=True)
        code = proc.wait()
    return starts, time.perf_counter() - start, code, busy_seconds() - busy0


def train_seconds(workdir: Path, stage: str) -> float | None:
    """``train_seconds`` of a training stage's metrics.json, read from dvc.yaml's rendering of the stage."""
    if not stage.startswith("train@"):
        return None
    import yaml

    params = yaml.safe_load((workdir / "params.yaml").read_text())
    run = params["train"]["runs"].get(stage.split("@", 1)[1])
    if run is None:
        return None
    metrics = workdir / "models" / run["dataset"] / run["variant"] / "metrics.json"
    return json.loads(metrics.read_text()).get("train_seconds") if metrics.exists() else None


def table(starts: list[tuple[float, str, float]], total: float, busy: float, workdir: Path) -> list[dict]:
    first, first_busy = (starts[0][0], starts[0][2]) if starts else (total, busy)
    rows = [{"stage": "(set-up: venv, install, dvc start)", "seconds": first, "cores": first_busy / max(first, 1e-9)}]
    for i, (t, name, b) in enumerate(starts):
        end, end_busy = (starts[i + 1][0], starts[i + 1][2]) if i + 1 < len(starts) else (total, busy)
        rows.append({"stage": name, "seconds": end - t, "cores": (end_busy - b) / max(end - t, 1e-9),
                     "train_seconds": train_seconds(workdir, name)})
    return rows


def markdown(rows: list[dict], total: float, busy_total: float = 0.0) -> str:
    lines = ["| stage | wall s | training s | other s | cores |", "|---|---|---|---|---|"]
    trained = other = 0.0
    for r in sorted(rows, key=lambda r: -r["seconds"]):
        ts = r.get("train_seconds")
        rest = r["seconds"] - ts if ts is not None else None
        if ts is not None:
            trained += ts
        other += rest if rest is not None else (r["seconds"] if not r["stage"].startswith("(") else 0.0)
        lines.append(f"| {r['stage']} | {r['seconds']:.1f} | {'' if ts is None else f'{ts:.1f}'} | "
                     f"{'' if rest is None else f'{rest:.1f}'} | {r.get('cores', 0.0):.2f} |")
    stages = [r for r in rows if not r["stage"].startswith("(")]
    lines.append(f"| **all {len(stages)} stages + set-up** | **{total:.1f}** | **{trained:.1f}** | "
                 f"{other:.1f} outside training, set-up excluded | {busy_total / max(total, 1e-9):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, help="clone into this folder (default: a new temporary folder)")
    parser.add_argument("--rev", default="HEAD", help="the commit to clone and run (default: HEAD)")
    parser.add_argument("--venv", type=Path, help="reuse this installed venv and run `dvc repro` only")
    parser.add_argument("--env", nargs="*", default=[], help="NAME=VALUE settings for the run")
    parser.add_argument("--avx2", action="store_true", help=f"cap the kernels at AVX2: {' '.join(AVX2)}")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    parser.add_argument("--keep-venv", action="store_true",
                        help="keep the clone's .venv (~2 GB; by default it is removed once the table is printed)")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="seqlab-repro-")) / "seqlab"
    if workdir.exists():
        shutil.rmtree(workdir)
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(workdir)], check=True)
    subprocess.run(["git", "checkout", "--quiet", args.rev], cwd=workdir, check=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for item in [*args.env, *(AVX2 if args.avx2 else ())]:
        name, _, value = item.partition("=")
        env[name] = value
    if args.venv:
        venv = args.venv.resolve()
        env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
        cmd = [str(venv / "bin" / "dvc"), "repro"]
    else:
        cmd = ["make", "repro"]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=workdir, capture_output=True, text=True)
    print(f"{' '.join(cmd)} in {workdir} (commit {head.stdout.strip()}, load {os.getloadavg()[0]:.2f}, "
          f"settings: {' '.join(a for a in [*args.env, *(AVX2 if args.avx2 else ())]) or 'none'})", flush=True)
    log = workdir.parent / "repro.log"
    starts, total, code, busy = timeline(cmd, workdir, env, log)
    rows = table(starts, total, busy, workdir)
    print(markdown(rows, total, busy))
    print(f"exit {code}, {total:.0f} s = {total // 60:.0f} min {total % 60:.0f} s; "
          f"load at the end {os.getloadavg()[0]:.2f}; log: {log}")
    if args.json:
        args.json.write_text(json.dumps({"total_s": total, "busy_cpu_s": busy, "exit": code, "rows": rows}, indent=1))
    if not args.venv and not args.keep_venv:  # the outputs, the store and the log stay for a look; the venv is 2 GB
        shutil.rmtree(workdir / ".venv", ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
