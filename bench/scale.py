"""seqlab at scale: every stage on real corpora of 10 MB, 100 MB and 1 GB, as ``dvc repro`` runs them.

    .venv/bin/python bench/scale.py                        # 10MB, 100MB, 1GB + Essen + DVC (tens of minutes)
    .venv/bin/python bench/scale.py --dry-run              # 1MB, 5 s of training, one Essen file: a minute or two
    .venv/bin/python bench/scale.py --sizes 10MB,100MB --skip-midi --train-seconds 60
    .venv/bin/python bench/scale.py --plot-only [bench/results/scale-<date>.json]   # table + picture again

What it does
  1. Corpora, offline: the ``.py`` files of the venv's site-packages (``sysconfig.get_path("purelib")``) in
     sorted order, concatenated into one file of exactly each size (decimal: 1GB = 10^9 bytes; site-packages
     holds ~300 MB of .py, so the 1 GB file starts again from the first file: the output and the JSON say how
     often).  Built once into ``<workdir>/corpora`` and reused while size and sha256 match the record.
  2. Per size, a fresh scratch workspace ``<workdir>/ws-<size>/`` holding a copy of the repository's
     params.yaml reduced to one corpus ``scale`` (``type: path``, the corpus file), one tokenize entry
     ``scale-char`` (char, ``record: verbatim_line``, ``max_size: 128``, contiguous split val 0.01 test 0.01), one run
     ``scale-char-lstm`` (1x256 LSTM, ``time_budget_s: --train-seconds``, ``progress: false``) and one baseline
     ``scale-char: {order: 6, max_train_tokens: 100_000_000}``.  The stages download, tokenize, train, evaluate
     and baseline run there one after another, each as one child process with the very command line of
     dvc.yaml (read from dvc.yaml and rendered for these keys), MLflow tracking into
     ``sqlite:///<workspace>/mlflow.db`` as users run it (``--tracking none`` turns it off).  Per stage: wall
     time, CPU seconds and peak RSS (the largest ``VmHWM`` of one process of the stage's tree, sampled from
     /proc: the stage itself and its pool workers; see bench/peak_rss.py for why not
     ``ru_maxrss``), the sampled peak of the RSS summed over its process tree ("tree MB"), and a throughput: download and tokenize MB/s of corpus, train tokens/s of its
     metrics.json, evaluate tokens scored (val + test) per wall second, baseline training tokens fitted per
     second of fitting.  Then the disk used by the workspace's data/raw, data/tokens, models, metrics, samples
     and MLflow store.  A failing stage is reported (exit code, last stderr lines, log files in
     ``<workspace>/logs/``); the stages that need its outputs are skipped, the others go on
     (``--stop-on-failure`` stops there).  A stage past ``--stage-timeout`` gets SIGTERM.
  3. MIDI: the Essen folk songs of music21's corpus (``composer: essenFolksong``, 31 ABC files, thousands of
     tunes) exported to MIDI by ``stages.download`` and encoded by ``stages.encode_midi`` (as the ``folk-note``
     dataset is) in ``<workdir>/ws-essen/``; ``--skip-midi`` leaves it out.
  4. DVC: for the largest size, its data/raw/scale and data/tokens/scale-char copied into a scratch git + DVC
     repository (``<workdir>/dvc-scratch``, removed afterwards): ``dvc add`` with DVC's default ``cache.type``
     (reflink,copy: a copy on a filesystem without reflinks) then ``dvc status``; then ``cache.type
     hardlink,symlink`` and ``dvc checkout --relink`` then ``dvc status``.  Disk counts every inode once
     (st_blocks), and also once per link, as ``du --count-links`` would.
  5. Output: the table (size | stage | wall s | peak RSS MB | tree MB | CPU s | throughput | target), the growth
     of wall time and RSS between consecutive sizes, the targets met or missed; raw results (machine facts
     included) in ``bench/results/scale-<YYYY-MM-DD>.json`` and the picture ``docs/scale.png`` (wall time and
     peak RSS against corpus size, log axes, one line per stage).  A dry run writes both into the workdir.
     The JSON is written after every stage, so an interrupted run keeps what it measured.

Targets (1 MB = 10^6 bytes; RSS checked as the larger of one process's peak and the tree's summed RSS)
  * every stage of the 1 GB char corpus finishes with peak RSS <= 2.5 GB;
  * tokenize >= 20 MB/s (char), at the largest size;
  * train tokens/s on 1 GB within 5% of the same model on a small corpus (the 10 MB run is the reference);
  * the 10 MB test split (1 GB x 0.01) scored in <= 2 minutes (the evaluate stage's own per-split seconds where
    its metrics give them, else its wall time shared out by tokens scored: marked "est.");
  * the 6-gram fitted on 100M chars (1 GB with max_train_tokens 100M) <= 5 minutes and <= 2.5 GB (stage wall);
  * Essen (export + encode) <= 5 minutes and <= 2 GB.
  A target checked on a size other than 1 GB (a dry run, ``--sizes``) says so.

Known figures: Essen export 194 s on 2 workers (0.37 GB), encode 4.8 s (0.12 GB).  The machine is shared:
the load average is recorded at the start and at the end; run it on quiet cores.  Corpora and workspaces
live under ``--workdir`` (default /tmp/seqlab-scale; the 1 GB case needs ~8 GB there at its peak, while DVC's scratch
repository holds a copy of its data and cache), never in the repository.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from scale_corpus import (
    MB,
    build_corpus,
    disk_usage,
    machine_facts,
    parse_size,
    python_bytes,
    run_measured,
    size_label,
    tail,
)
from scale_report import TEXT_STAGES, check_targets, growth, plot, report, summary_lines

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
DVC = str(Path(PYTHON).parent / "dvc")
RUN, DATASET, VARIANT = "scale-char-lstm", "scale-char", "lstm"
MIDI_DATASET = "essen-note"
NEEDS = {"tokenize": "download", "train": "tokenize", "evaluate": "train", "baseline": "tokenize",
         "encode_midi": "download"}
DATA_FOLDERS = ("data/raw", "data/tokens", "models", "metrics", "samples", "mlflow.db", "mlartifacts", "mlruns")


# --------------------------------------------------------------------------- params and commands


def scratch_params(corpora: dict, tokenize: dict, encode_midi: dict, runs: dict, baselines: dict) -> dict:
    """The repository's params.yaml with its data sections replaced: every other section as users have it."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params.update(corpora=corpora, tokenize=tokenize, encode_midi=encode_midi)
    params["train"]["runs"] = runs
    params["evaluate"]["baselines"] = baselines
    params["evaluate"]["interpolate"] = {}
    return params


def text_params(corpus: Path, train_seconds: float, tracking: str) -> dict:
    return scratch_params(
        corpora={"scale": {"kind": "text", "description": f".py files of site-packages ({corpus.name})",
                           "source": {"type": "path", "path": str(corpus)}}},
        # max_size: the same model at every size.  Source text past a few MB carries thousands of rare
        # characters (8,548 distinct in the 1 GB corpus, 122 in 10 MB): uncapped, the softmax grows 70x and the
        # sizes no longer train or score the same network.  Characters past the 125 most frequent become <unk>.
        tokenize={DATASET: {"corpus": "scale", "level": "char", "record": "verbatim_line", "max_size": 128,
                            "split": {"method": "contiguous", "val": 0.01, "test": 0.01, "seed": 1337}}},
        encode_midi={},
        runs={RUN: {"dataset": DATASET, "variant": VARIANT,
                    "model": {"cell": "lstm", "embedding_size": 64, "hidden_size": 256, "num_layers": 1},
                    "overrides": {"time_budget_s": train_seconds, "progress": False, "tracking": tracking}}},
        baselines={DATASET: {"order": 6, "max_train_tokens": 100_000_000}},
    )


def midi_params(limit: int | None) -> dict:
    source: dict[str, Any] = {"type": "music21", "composer": "essenFolksong"}
    if limit is not None:
        source["limit"] = limit
    return scratch_params(
        corpora={"essen": {"kind": "midi", "description": "Essen folk songs (ABC in music21's corpus) as MIDI",
                           "source": source}},
        tokenize={},
        encode_midi={MIDI_DATASET: {"corpus": "essen", "encoding": "note", "chords": "pitch_classes",
                                    "normalize_key": True, "min_freq": 1,
                                    "split": {"method": "random", "val": 0.1, "test": 0.1, "seed": 1337}}},
        runs={}, baselines={},
    )


def stage_command(stage: str, params: dict, key: str | None = None) -> list[str]:
    """dvc.yaml's ``cmd`` of ``stage`` rendered for ``key`` (``${key}``, ``${item.<field>}``), venv python first."""
    definition = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"][stage]
    body = definition.get("do", definition)
    items = {"tokenize": params["tokenize"], "encode_midi": params["encode_midi"], "train": params["train"]["runs"],
             "evaluate": params["train"]["runs"], "baseline": params["evaluate"]["baselines"]}
    item = items.get(stage, {}).get(key, {}) if key else {}

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name == "key":
            return str(key)
        if name.startswith("item.") and name[5:] in item:
            return str(item[name[5:]])
        raise KeyError(f"dvc.yaml stage {stage}: cannot render ${{{name}}} for {key!r}")

    args = shlex.split(re.sub(r"\$\{([\w.]+)\}", value, " ".join(str(body["cmd"]).split())))
    return [PYTHON, *args[1:]] if args and args[0] == "python" else args


def stage_env(workspace: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": pythonpath, "MLFLOW_TRACKING_URI": f"sqlite:///{workspace / 'mlflow.db'}",
            "DVC_NO_ANALYTICS": "1"}


def fresh_workspace(path: Path, params: dict) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- what each stage produced


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _numbers(d: Any) -> dict:
    return {k: v for k, v in (d or {}).items() if isinstance(v, (int, float, str, bool)) or v is None}


def outcome(group: str, stage: str, ws: Path, corpus_bytes: int, wall: float) -> tuple[float | None, str, dict]:
    """(throughput, unit, details) of a finished stage, read from its outputs."""
    if group == "text" and stage == "download":
        return corpus_bytes / MB / wall, "MB/s", {}
    if stage == "tokenize":
        stats = _read(ws / "data/tokens" / DATASET / "stats.json") or {}
        details = {"vocab_size": stats.get("vocab_size"),
                   **{f"{s}_tokens": (stats.get(s) or {}).get("tokens") for s in ("train", "val", "test")}}
        return corpus_bytes / MB / wall, "MB/s", details
    if stage == "train":
        metrics = _read(ws / "models" / DATASET / VARIANT / "metrics.json") or {}
        return metrics.get("tokens_per_s"), "tok/s", {"metrics": _numbers(metrics)}
    if stage == "evaluate":
        metrics = _read(ws / "metrics" / DATASET / f"{VARIANT}.json") or {}
        val, test = metrics.get("val") or {}, metrics.get("test") or {}
        details = {"val_tokens": val.get("tokens"), "test_tokens": test.get("tokens"),
                   "test_seconds": test.get("seconds", test.get("score_seconds")), "lanes": test.get("lanes"),
                   "test": _numbers(test), "val": _numbers(val)}
        scored = (val.get("tokens") or 0) + (test.get("tokens") or 0)
        return scored / wall, "tok/s", details
    if stage == "baseline":
        metrics = _read(ws / "metrics" / DATASET / "ngram.json") or {}
        stats = _read(ws / "data/tokens" / DATASET / "stats.json") or {}
        fitted = metrics.get("train_tokens", metrics.get("fitted_tokens"))
        if fitted is None:
            fitted = min((stats.get("train") or {}).get("tokens") or 0, 100_000_000)
        fit_s = metrics.get("fit_seconds")
        return (fitted / fit_s if fit_s else None), "tok/s fit", {
            "fitted_tokens": fitted, "fit_seconds": fit_s, "ngrams": metrics.get("ngrams"),
            "test": _numbers(metrics.get("test")), "val": _numbers(metrics.get("val"))}
    if stage == "download":  # MIDI export
        files = sum(1 for _ in (ws / "data/raw/essen").rglob("*.mid"))
        return files / wall, "files/s", {"midi_files": files}
    if stage == "encode_midi":
        stats = _read(ws / "data/tokens" / MIDI_DATASET / "stats.json") or {}
        files = stats.get("files") or 0
        return files / wall, "files/s", {"files": files, "skipped": stats.get("skipped"),
                                         "vocab_size": stats.get("vocab_size"),
                                         **{f"{s}_tokens": (stats.get(s) or {}).get("tokens")
                                            for s in ("train", "val", "test")}}
    return None, "", {}


# --------------------------------------------------------------------------- running stages


class Bench:
    """The run's result dictionary, saved as JSON after every stage."""

    def __init__(self, args: argparse.Namespace, json_path: Path) -> None:
        self.args, self.json_path = args, json_path
        self.result: dict[str, Any] = {"schema": 1, "rows": [], "corpora": {}, "disk": {}}

    def save(self) -> None:
        self.result["growth"] = growth(self.result)
        self.result["targets"] = check_targets(self.result)
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.json_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.result, indent=1, default=str))
        os.replace(tmp, self.json_path)

    def stage(self, group: str, size: str, nbytes: int, stage: str, cmd: list[str], ws: Path,
              done: dict[str, bool]) -> bool:
        """Run one stage (or skip it when what it needs failed); record its row; True when it succeeded."""
        row: dict[str, Any] = {"group": group, "size": size, "bytes": nbytes, "stage": stage}
        need = NEEDS.get(stage)
        if need and not done.get(need):
            row.update(status="skipped", reason=f"{need} did not finish")
            self.result["rows"].append(row)
            self.save()
            print(f"  {size} {stage}: skipped ({need} did not finish)", flush=True)
            return False
        print(f"  {size} {stage}: {shlex.join([Path(cmd[0]).name, *cmd[1:]])}", flush=True)
        log = ws / "logs" / stage
        try:
            measured = run_measured(cmd, ws, stage_env(ws), log, self.args.stage_timeout)
        except OSError as e:  # the command could not start at all
            measured = {"rc": None, "wall_s": 0.0, "cpu_s": 0.0, "peak_rss_mb": 0.0, "tree_rss_mb": 0.0,
                        "tree_anon_mb": 0.0, "timed_out": False}
            Path(f"{log}.err").write_text(f"could not start {cmd[0]}: {e}\n")
        row.update(measured, cmd=shlex.join(cmd), log=str(log))
        ok = measured["rc"] == 0
        row["status"] = "ok" if ok else "timeout" if measured["timed_out"] else "failed"
        if ok:
            try:
                row["throughput"], row["unit"], row["details"] = outcome(group, stage, ws, nbytes, measured["wall_s"])
            except (TypeError, ValueError, ZeroDivisionError, AttributeError) as e:  # outputs of an unexpected shape
                row.update(throughput=None, unit="", details={"error": f"{type(e).__name__}: {e}"})
        else:
            row["stderr_tail"] = tail(Path(f"{log}.err"))
        row["stdout_tail"] = tail(Path(f"{log}.out"), 3)
        self.result["rows"].append(row)
        self.save()
        state = "ok" if ok else f"{row['status'].upper()} exit {measured['rc']}"
        print(f"    {state}: {measured['wall_s']:.1f} s, peak RSS {measured['peak_rss_mb']:.0f} MB "
              f"(tree {measured['tree_rss_mb']:.0f} MB), CPU {measured['cpu_s']:.1f} s", flush=True)
        if not ok:
            for line in row["stderr_tail"][-6:]:
                print(f"      | {line}", flush=True)
        done[stage] = ok
        return ok

    def text_size(self, nbytes: int, corpus: Path) -> bool:
        """All five stages on one corpus size; False when a stage failed."""
        label = size_label(nbytes)
        params = text_params(corpus, self.args.train_seconds, self.args.tracking)
        ws = fresh_workspace(self.args.workdir / f"ws-{label}", params)
        print(f"\n{label}: workspace {ws}", flush=True)
        keys = {"download": None, "tokenize": DATASET, "train": RUN, "evaluate": RUN, "baseline": DATASET}
        done: dict[str, bool] = {}
        for stage in TEXT_STAGES:
            ok = self.stage("text", label, nbytes, stage, stage_command(stage, params, keys[stage]), ws, done)
            if not ok and self.args.stop_on_failure:
                break
        self.result["disk"][label] = {f: disk_usage(ws / f) for f in DATA_FOLDERS}
        self.save()
        return all(done.get(s) for s in TEXT_STAGES)

    def midi(self) -> bool:
        limit = 1 if self.args.dry_run else None
        params = midi_params(limit)
        ws = fresh_workspace(self.args.workdir / "ws-essen", params)
        self.result["midi"] = {"workspace": str(ws), "limit": limit, "full": limit is None}
        print(f"\nEssen MIDI{' (first ABC file only: dry run)' if limit else ''}: workspace {ws}", flush=True)
        done: dict[str, bool] = {}
        ok = self.stage("midi", "essen", 0, "download", stage_command("download", params), ws, done)
        if ok or not self.args.stop_on_failure:
            ok = self.stage("midi", "essen", 0, "encode_midi", stage_command("encode_midi", params, MIDI_DATASET),
                            ws, done) and ok
        self.result["midi"]["disk"] = {f: disk_usage(ws / f) for f in ("data/raw", "data/tokens")}
        self.save()
        return ok


# --------------------------------------------------------------------------- DVC


def dvc_costs(bench: Bench, label: str) -> None:
    """dvc add / status / checkout --relink on the largest size's data, in a scratch git + DVC repository."""
    ws, scratch = bench.args.workdir / f"ws-{label}", bench.args.workdir / "dvc-scratch"
    sources = [ws / "data/raw/scale", ws / "data/tokens" / DATASET]
    info: dict[str, Any] = {"size": label, "default_cache_type": "reflink,copy"}
    bench.result["dvc"] = info
    finished = {r["stage"] for r in bench.result["rows"] if r["size"] == label and r.get("status") == "ok"}
    if not {"download", "tokenize"} <= finished or not all(p.is_dir() for p in sources):
        info["error"] = "skipped: the download or tokenize outputs are missing"
        bench.save()
        return
    print(f"\nDVC: {scratch}", flush=True)
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    env = stage_env(scratch)
    try:
        for cmd in (["git", "init", "-q"], [DVC, "init", "-q"], [DVC, "config", "core.analytics", "false"]):
            subprocess.run(cmd, cwd=scratch, env=env, check=True, capture_output=True, text=True)
        targets = ["data/raw/scale", f"data/tokens/{DATASET}"]
        for src, rel in zip(sources, targets, strict=True):
            shutil.copytree(src, scratch / rel)
        folders = [scratch / "data", scratch / ".dvc" / "cache"]
        usage = disk_usage(*folders)
        info.update(data_bytes=usage["bytes"], disk_before=usage["disk"])

        def measured(name: str, *args: str) -> float:
            m = run_measured([DVC, *args], scratch, env, scratch.parent / "dvc-logs" / name, bench.args.stage_timeout)
            if m["rc"]:
                raise RuntimeError(f"dvc {' '.join(args)}: exit {m['rc']}: "
                                   f"{' | '.join(tail(scratch.parent / 'dvc-logs' / f'{name}.err', 4))}")
            info[f"{name}_peak_rss_mb"] = m["peak_rss_mb"]
            print(f"  dvc {' '.join(args)}: {m['wall_s']:.1f} s, peak RSS {m['peak_rss_mb']:.0f} MB", flush=True)
            return m["wall_s"]

        info["add_s"] = measured("add", "add", *targets)
        usage = disk_usage(*folders)
        info.update(disk_copy=usage["disk"], disk_copy_per_link=usage["disk_per_link"], du_copy_k=_du(folders))
        info["status_copy_s"] = measured("status_copy", "status")
        subprocess.run([DVC, "config", "cache.type", "hardlink,symlink"], cwd=scratch, env=env, check=True,
                       capture_output=True)
        info["relink_s"] = measured("relink", "checkout", "--relink")
        usage = disk_usage(*folders)
        info.update(disk_link=usage["disk"], disk_link_per_link=usage["disk_per_link"], du_link_k=_du(folders),
                    du_link_count_links_k=_du(folders, "--count-links"))
        info["status_link_s"] = measured("status_link", "status")
    except (subprocess.CalledProcessError, RuntimeError, OSError) as e:
        detail = getattr(e, "stderr", "") or ""
        info["error"] = f"{e} {detail}".strip()[:500]
        print(f"  DVC measurement failed: {info['error']}", flush=True)
    finally:
        if not bench.args.keep_dvc_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    bench.save()


def _du(folders: list[Path], *flags: str) -> int | None:
    """``du -skc [flags] folders``' total in KiB (one du call: a hard link into the cache counted once)."""
    try:
        out = subprocess.run(["du", "-skc", *flags, *map(str, folders)], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return int(out.stdout.strip().splitlines()[-1].split()[0])


# --------------------------------------------------------------------------- main


def purelib() -> Path:
    out = subprocess.run([PYTHON, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def repo_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"), "modified_files": git("status", "--short").splitlines()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", help="comma-separated corpus sizes (default 10MB,100MB,1GB; --dry-run: 1MB)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/seqlab-scale"),
                        help="corpora cache and scratch workspaces (default: /tmp/seqlab-scale)")
    parser.add_argument("--train-seconds", type=float, help="the train run's time_budget_s (default 60; --dry-run: 5)")
    parser.add_argument("--skip-midi", action="store_true", help="leave out the Essen MIDI case")
    parser.add_argument("--skip-dvc", action="store_true", help="leave out the DVC disk measurement")
    parser.add_argument("--dry-run", action="store_true",
                        help="rehearse: 1MB, 5 s of training, one Essen file; JSON and picture go to the workdir")
    parser.add_argument("--plot-only", nargs="?", const="latest", metavar="JSON",
                        help="reprint the table and redraw the picture from a results JSON (default: the newest)")
    parser.add_argument("--tracking", choices=("mlflow", "none"), default="mlflow",
                        help="the train run's tracking (default mlflow, sqlite store in the workspace)")
    parser.add_argument("--stage-timeout", type=float, help="SIGTERM a stage after this many seconds "
                        "(default 3600; --dry-run: 600)")
    parser.add_argument("--stop-on-failure", action="store_true", help="stop at the first failing stage")
    parser.add_argument("--keep-dvc-scratch", action="store_true", help="keep <workdir>/dvc-scratch")
    args = parser.parse_args(argv)
    args.workdir = args.workdir.resolve()
    if args.workdir == ROOT or ROOT in args.workdir.parents:
        parser.error(f"--workdir {args.workdir} is inside the repository: corpora never go there")
    args.sizes = [parse_size(s) for s in (args.sizes or ("1MB" if args.dry_run else "10MB,100MB,1GB")).split(",")]
    args.sizes = sorted(set(args.sizes))
    args.train_seconds = args.train_seconds or (5.0 if args.dry_run else 60.0)
    args.stage_timeout = args.stage_timeout or (600.0 if args.dry_run else 3600.0)
    return args


def outputs(args: argparse.Namespace, dry_run: bool) -> tuple[Path, Path]:
    """(results JSON, picture): the repository's for a real run, the workdir's for a dry run."""
    day = datetime.date.today().isoformat()
    if dry_run:
        return args.workdir / "results" / f"scale-dryrun-{day}.json", args.workdir / "scale-dryrun.png"
    return ROOT / "bench" / "results" / f"scale-{day}.json", ROOT / "docs" / "scale.png"


def plot_only(args: argparse.Namespace) -> int:
    if args.plot_only == "latest":
        found = sorted((ROOT / "bench" / "results").glob("scale-*.json"))
        if not found:
            print("no bench/results/scale-*.json yet: run bench/scale.py first", file=sys.stderr)
            return 2
        path = found[-1]
    else:
        path = Path(args.plot_only)
    result = json.loads(path.read_text())
    result["targets"], result["growth"] = check_targets(result), growth(result)
    print(report(result))
    print("\n".join(summary_lines(result)))
    if result.get("dry_run"):  # next to the dry run's own JSON, never docs/
        args.workdir = Path(result.get("settings", {}).get("workdir") or args.workdir)
    picture = outputs(args, bool(result.get("dry_run")))[1]
    print(f"picture: {plot(result, picture)} (from {path})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plot_only:
        return plot_only(args)
    json_path, picture = outputs(args, args.dry_run)
    bench = Bench(args, json_path)
    source = purelib()
    bench.result.update(
        date=datetime.datetime.now().isoformat(timespec="seconds"), dry_run=args.dry_run, argv=sys.argv[1:],
        machine=machine_facts(), repo=repo_state(), load_start=os.getloadavg(),
        settings={"sizes": [size_label(n) for n in args.sizes], "train_seconds": args.train_seconds,
                  "workdir": str(args.workdir), "tracking": args.tracking, "stage_timeout_s": args.stage_timeout,
                  "python": PYTHON, "site_packages": str(source), "site_packages_py_bytes": python_bytes(source)})
    m = bench.result["machine"]
    print(f"seqlab scale benchmark{' (DRY RUN)' if args.dry_run else ''}: sizes "
          f"{', '.join(bench.result['settings']['sizes'])}, train {args.train_seconds:g} s; {m.get('cpu')}, "
          f"{m.get('usable_cpus')} CPUs, {m.get('memory_gb')} GB, torch {m.get('torch_version')}, "
          f"avx512f {m.get('avx512f')}, avx512_bf16 {m.get('avx512_bf16')}; load {os.getloadavg()[0]:.2f}")
    code = 0
    try:
        corpora = {}
        for n in args.sizes:
            info = build_corpus(args.workdir / "corpora", n, source)
            corpora[n] = Path(info["path"])
            bench.result["corpora"][size_label(n)] = info
            wrapped = f"; site-packages holds less .py text: restarted from the first file {info['wraps']}x" \
                if info["wraps"] else ""
            how = "reused" if info["reused"] else f"built in {info['build_s']:.1f} s:"
            print(f"corpus {size_label(n)}: {how} {info['path']}{wrapped}", flush=True)
        bench.save()
        for n in args.sizes:
            if not bench.text_size(n, corpora[n]) and args.stop_on_failure:
                code = 1
                break
        else:
            if not args.skip_midi and not bench.midi() and args.stop_on_failure:
                code = 1
        if not args.skip_dvc and code == 0:
            dvc_costs(bench, size_label(args.sizes[-1]))
    except KeyboardInterrupt:
        print("\ninterrupted: the stage was stopped; results so far follow", flush=True)
        bench.result["interrupted"] = True
        code = 130
    bench.result["load_end"] = os.getloadavg()
    bench.save()
    result = bench.result
    print()
    print(report(result))
    print("\n".join(summary_lines(result)))
    if any(r.get("status") in ("failed", "timeout") for r in result["rows"]):
        code = code or 1
    try:
        print(f"results: {json_path}\npicture: {plot(result, picture)}")
    except Exception as e:  # noqa: BLE001 - the table and JSON are already out; a plotting error is one line
        print(f"results: {json_path}\npicture: not drawn ({type(e).__name__}: {e}); retry with --plot-only {json_path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
