"""bench/scale.py's results: the table, the growth between sizes, the targets, and the picture.

Everything here reads the result dictionary that bench/scale.py writes as JSON, so that ``--plot-only``
redraws the picture (and reprints the table) from a saved run.  Units are decimal: 1 MB = 10^6 bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEXT_STAGES = ("download", "tokenize", "train", "evaluate", "baseline")
RSS_LIMIT_MB = 2500  # every stage of the 1 GB char corpus
TOKENIZE_MB_S = 20.0
TRAIN_TOLERANCE = 0.05  # tokens/s on 1 GB within 5% of the small reference corpus
TEST_SCORE_S = 120.0  # a 10 MB test split
NGRAM_S, NGRAM_RSS_MB = 300.0, 2500  # 6-gram on 100M chars
ESSEN_S, ESSEN_RSS_MB = 300.0, 2000


def rss_of(row: dict) -> float:
    """The peak a target is checked against: one process's peak (VmHWM) or the sampled sum over the process tree,
    the larger."""
    return max(row.get("peak_rss_mb") or 0.0, row.get("tree_rss_mb") or 0.0)


def _text_rows(result: dict) -> list[dict]:
    return [r for r in result.get("rows", []) if r.get("group") == "text"]


def _sizes(result: dict) -> list[tuple[str, int]]:
    seen = {r["size"]: r["bytes"] for r in _text_rows(result)}
    return sorted(seen.items(), key=lambda kv: kv[1])


def _row(result: dict, size: str, stage: str) -> dict | None:
    return next((r for r in _text_rows(result) if r["size"] == size and r["stage"] == stage), None)


def _ok(row: dict | None) -> bool:
    return row is not None and row.get("status") == "ok"


# --------------------------------------------------------------------------- targets


def _target(key: str, text: str, met: bool | None, value: str, rows: list[tuple[str, str]], note: str = "",
            row_met: list[bool | None] | None = None) -> dict:
    """One target; ``rows`` are the table rows it marks, ``row_met`` (per row) where rows are judged one by one."""
    return {"key": key, "target": text, "met": met, "value": value, "rows": [list(r) for r in rows], "note": note,
            "row_met": row_met if row_met is not None else [met] * len(rows)}


def _where(size: str) -> str:
    return "" if size == "1GB" else f"checked on {size}, not 1GB"


def check_targets(result: dict) -> list[dict]:
    """Each target of bench/scale.py's docstring: met (True/False), or None where the run has no figure for it."""
    out: list[dict] = []
    sizes = _sizes(result)
    if sizes:
        big = sizes[-1][0]
        out += [_rss_target(result, big), _tokenize_target(result, big), _train_target(result, sizes),
                _evaluate_target(result, big), _ngram_target(result, big)]
    midi = [r for r in result.get("rows", []) if r.get("group") == "midi"]
    if midi:
        done = all(_ok(r) for r in midi)
        wall, rss = sum(r.get("wall_s") or 0.0 for r in midi), max(rss_of(r) for r in midi)
        met = done and wall <= ESSEN_S and rss <= ESSEN_RSS_MB
        note = "" if result.get("midi", {}).get("full", True) else "a part of Essen only (--dry-run)"
        out.append(_target("essen", f"Essen export + encode <= {ESSEN_S / 60:g} min and <= {ESSEN_RSS_MB / 1000:g} GB",
                           met if done else False, f"{wall:.0f} s, {rss / 1000:.2f} GB" + ("" if done else ", a stage failed"),
                           [(r["size"], r["stage"]) for r in midi], note))
    return out


def _rss_target(result: dict, big: str) -> dict:
    rows = [r for r in _text_rows(result) if r["size"] == big]
    failed = [r["stage"] for r in rows if not _ok(r)]
    worst = max(rows, key=rss_of)
    met = not failed and rss_of(worst) <= RSS_LIMIT_MB
    value = f"max {rss_of(worst) / 1000:.2f} GB ({worst['stage']})" + (f"; not finished: {', '.join(failed)}" if failed else "")
    return _target("rss", f"every stage finishes with peak RSS <= {RSS_LIMIT_MB / 1000:g} GB", met, value,
                   [(big, r["stage"]) for r in rows], _where(big),
                   [rss_of(r) <= RSS_LIMIT_MB if _ok(r) else None for r in rows])


def _tokenize_target(result: dict, big: str) -> dict:
    row = _row(result, big, "tokenize")
    text = f"tokenize >= {TOKENIZE_MB_S:g} MB/s (char)"
    if not _ok(row):
        return _target("tokenize", text, False if row else None, "did not finish" if row else "not run", [(big, "tokenize")])
    assert row is not None
    return _target("tokenize", text, row["throughput"] >= TOKENIZE_MB_S, f"{row['throughput']:.1f} MB/s",
                   [(big, "tokenize")], _where(big))


def _train_target(result: dict, sizes: list[tuple[str, int]]) -> dict:
    big = sizes[-1][0]
    small = [s for s, _ in sizes if s != big]
    ref = "10MB" if "10MB" in small else (small[0] if small else None)
    text = f"train tokens/s on 1 GB within {TRAIN_TOLERANCE:.0%} of a small corpus"
    row, ref_row = _row(result, big, "train"), _row(result, ref, "train") if ref else None
    if ref is None or not (_ok(row) and _ok(ref_row)):
        why = "one size only: no reference" if ref is None else "a train stage did not finish"
        return _target("train", text, None if ref is None else False, why, [(big, "train")])
    assert row is not None and ref_row is not None
    ratio = row["throughput"] / ref_row["throughput"] if ref_row["throughput"] else 0.0
    return _target("train", text, ratio >= 1 - TRAIN_TOLERANCE,
                   f"{row['throughput']:,.0f} vs {ref_row['throughput']:,.0f} tok/s on {ref} ({ratio:.3f}x)",
                   [(big, "train"), (ref, "train")], _where(big))


def _evaluate_target(result: dict, big: str) -> dict:
    row = _row(result, big, "evaluate")
    text = f"the 10 MB test split scored in <= {TEST_SCORE_S / 60:g} min"
    if not _ok(row):
        return _target("evaluate", text, False if row else None, "did not finish" if row else "not run", [(big, "evaluate")])
    assert row is not None
    d = row.get("details", {})
    seconds, how = d.get("test_seconds"), "measured"
    if seconds is None:  # the stage does not time its splits: its wall time shared by tokens scored
        scored = (d.get("val_tokens") or 0) + (d.get("test_tokens") or 0)
        seconds, how = row["wall_s"] * (d.get("test_tokens") or 0) / max(scored, 1), "est. from wall by token share"
    value = f"{seconds:.1f} s for {(d.get('test_tokens') or 0) / 1e6:.2f}M test tokens ({how})"
    return _target("evaluate", text, seconds <= TEST_SCORE_S, value, [(big, "evaluate")], _where(big))


def _ngram_target(result: dict, big: str) -> dict:
    row = _row(result, big, "baseline")
    text = f"6-gram on 100M chars <= {NGRAM_S / 60:g} min and <= {NGRAM_RSS_MB / 1000:g} GB"
    if not _ok(row):
        return _target("ngram", text, False if row else None, "did not finish" if row else "not run", [(big, "baseline")])
    assert row is not None
    fitted = row.get("details", {}).get("fitted_tokens") or 0
    met = row["wall_s"] <= NGRAM_S and rss_of(row) <= NGRAM_RSS_MB
    note = "" if fitted >= 99_000_000 else f"fitted on {fitted / 1e6:.2f}M tokens, not 100M"
    return _target("ngram", text, met, f"{row['wall_s']:.0f} s, {rss_of(row) / 1000:.2f} GB", [(big, "baseline")], note)


# --------------------------------------------------------------------------- growth


def growth(result: dict) -> list[dict]:
    """Per stage and consecutive pair of sizes: how many times more wall time and peak RSS the larger took."""
    sizes = _sizes(result)
    out = []
    for stage in TEXT_STAGES:
        for (a, na), (b, nb) in zip(sizes, sizes[1:], strict=False):
            ra, rb = _row(result, a, stage), _row(result, b, stage)
            if _ok(ra) and _ok(rb):
                assert ra is not None and rb is not None
                out.append({"stage": stage, "from": a, "to": b, "size_x": round(nb / na, 2),
                            "wall_x": round(rb["wall_s"] / max(ra["wall_s"], 1e-9), 2),
                            "rss_x": round(rss_of(rb) / max(rss_of(ra), 1e-9), 2)})
    return out


# --------------------------------------------------------------------------- printing


def _marks(targets: list[dict]) -> dict[tuple[str, str], list[str]]:
    marks: dict[tuple[str, str], list[str]] = {}
    for t in targets:
        for (size, stage), met in zip(t["rows"], t.get("row_met", [t["met"]] * len(t["rows"])), strict=True):
            if met is not None:
                marks.setdefault((size, stage), []).append(f"{t['key']} {'met' if met else 'MISSED'}")
    return marks


def _throughput(row: dict) -> str:
    if row.get("status") != "ok":
        why = "timed out" if row.get("status") == "timeout" else "skipped" if row.get("status") == "skipped" else "FAILED"
        return f"{why} (exit {row.get('rc')})" if row.get("rc") is not None else why
    value = row.get("throughput")
    return "" if value is None else f"{value:,.1f} {row.get('unit', '')}"


def table(result: dict) -> str:
    targets = result.get("targets") or check_targets(result)
    marks = _marks(targets)
    header = f"{'size':>7} | {'stage':<12} | {'wall s':>8} | {'peak RSS MB':>11} | {'tree MB':>8} | {'CPU s':>8} | " \
             f"{'throughput':<24} | target"
    lines = [header, "-" * len(header)]
    for row in result.get("rows", []):
        if row.get("status") == "skipped":
            lines.append(f"{row['size']:>7} | {row['stage']:<12} | {'':>8} | {'':>11} | {'':>8} | {'':>8} | "
                         f"{'skipped: ' + row.get('reason', ''):<24} |")
            continue
        mark = "; ".join(marks.get((row["size"], row["stage"]), []))
        lines.append(f"{row['size']:>7} | {row['stage']:<12} | {row.get('wall_s', 0):8.1f} | "
                     f"{row.get('peak_rss_mb', 0):11.0f} | {row.get('tree_rss_mb', 0):8.0f} | {row.get('cpu_s', 0):8.1f} | "
                     f"{_throughput(row):<24} | {mark}")
    return "\n".join(lines)


def growth_table(result: dict) -> str:
    rows = result.get("growth") or growth(result)
    if not rows:
        return "growth: one size only (or no pair of sizes where a stage finished twice)"
    lines = ["growth (larger / smaller): stage | sizes | size x | wall time x | peak RSS x"]
    lines += [f"  {g['stage']:<10} | {g['from']:>6} -> {g['to']:<6} | {g['size_x']:6.1f} | {g['wall_x']:11.2f} | "
              f"{g['rss_x']:10.2f}" for g in rows]
    return "\n".join(lines)


def targets_text(result: dict) -> str:
    lines = ["targets:"]
    for t in result.get("targets") or check_targets(result):
        state = {True: "met   ", False: "MISSED", None: "n/a   "}[t["met"]]
        note = f"  [{t['note']}]" if t.get("note") else ""
        lines.append(f"  {state} {t['target']}: {t['value']}{note}")
    return "\n".join(lines)


def failures_text(result: dict) -> str:
    lines = []
    for row in result.get("rows", []):
        if row.get("status") in ("failed", "timeout"):
            lines.append(f"{row['size']} {row['stage']}: exit {row.get('rc')}"
                         f"{' (timed out)' if row.get('status') == 'timeout' else ''}; log {row.get('log', '')}.err:")
            lines += [f"    {line}" for line in row.get("stderr_tail", [])]
    return "\n".join(["failed stages:", *lines]) if lines else ""


# --------------------------------------------------------------------------- picture


def plot(result: dict, path: Path) -> Path:
    """Two panels against corpus size (log x): wall time and peak RSS, one line per text stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    fig, (ax_time, ax_rss) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for stage in TEXT_STAGES:
        points = sorted((r["bytes"], r["wall_s"], rss_of(r)) for r in _text_rows(result)
                        if r["stage"] == stage and r.get("status") == "ok")
        if not points:
            continue
        xs = [p[0] / 1e6 for p in points]
        ax_time.plot(xs, [p[1] for p in points], marker="o", label=stage)
        ax_rss.plot(xs, [p[2] for p in points], marker="o", label=stage)
    ax_rss.axhline(RSS_LIMIT_MB, color="grey", linestyle="--", linewidth=1)
    ax_rss.text(0.02, RSS_LIMIT_MB, " target 2.5 GB", va="bottom", transform=ax_rss.get_yaxis_transform(), color="grey")
    sizes = _sizes(result)
    for ax, label in ((ax_time, "wall time (s)"), (ax_rss, "peak RSS (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([n / 1e6 for _, n in sizes], [s for s, _ in sizes])
        ax.xaxis.set_minor_locator(NullLocator())  # only the sizes run are ticked
        ax.set_xlabel("corpus size (.py text, decimal units)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_time.set_title("wall time per stage", fontsize=9)
    ax_rss.set_title("peak RSS: the larger of one process's peak and the process tree's sum", fontsize=9)
    ax_time.legend(fontsize=8)
    machine = result.get("machine", {})
    train_s = result.get("settings", {}).get("train_seconds")
    fig.suptitle(f"seqlab stages on .py text from site-packages ({machine.get('cpu', '?')}, "
                 f"{machine.get('usable_cpus', '?')} CPUs; train budget {train_s} s)"
                 + ("  [DRY RUN]" if result.get("dry_run") else ""), fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(result: dict) -> str:
    parts = [table(result), "", growth_table(result), "", targets_text(result)]
    failures = failures_text(result)
    if failures:
        parts += ["", failures]
    return "\n".join(parts)


def summary_lines(result: dict) -> list[str]:
    """Corpus, disk and DVC facts printed under the table."""
    lines = []
    for label, c in result.get("corpora", {}).items():
        wrapped = f", site-packages' .py restarted from the first file {c['wraps']}x" if c.get("wraps") else ""
        lines.append(f"corpus {label}: {c['bytes']:,} bytes from {c.get('files_used', 0):,} .py files "
                     f"({c.get('skipped_files', 0)} not UTF-8 left out){wrapped}; "
                     f"{'reused' if c.get('reused') else 'built'}; sha256 {c['sha256'][:12]}")
    for label, folders in result.get("disk", {}).items():
        text = ", ".join(f"{name} {u['disk'] / 1e6:,.1f} MB" for name, u in folders.items() if u["disk"])
        lines.append(f"disk {label}: {text}")
    dvc: dict[str, Any] = result.get("dvc") or {}
    if dvc.get("error"):
        lines.append(f"dvc ({dvc.get('size')}): {dvc['error']}")
    elif dvc:
        lines.append(
            f"dvc ({dvc['size']}, {dvc['data_bytes'] / 1e6:,.0f} MB of outputs): disk before add "
            f"{dvc['disk_before'] / 1e6:,.0f} MB; cache.type default ({dvc.get('default_cache_type', 'copy')}): add "
            f"{dvc['add_s']:.1f} s, disk {dvc['disk_copy'] / 1e6:,.0f} MB, status {dvc['status_copy_s']:.1f} s; "
            f"hardlink,symlink: checkout --relink {dvc['relink_s']:.1f} s, disk {dvc['disk_link'] / 1e6:,.0f} MB "
            f"(each link counted: {dvc['disk_link_per_link'] / 1e6:,.0f} MB), status {dvc['status_link_s']:.1f} s")
    return lines
