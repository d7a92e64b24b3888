"""MIDI corpus encoding speed: seqlab's encoder against ``converter.parse`` + flatten, on >= 300 real MIDI files.

    .venv/bin/python bench/bench_midi.py [--corpus /tmp/seqlab-bench/bach] [--limit 0] [--repeats 3] [--workers 0]

The corpus is every Bach work in music21's bundled corpus exported to ``.mid`` by the download stage's
exporter (``export_music21_corpus``; ~410 files, exported once into ``--corpus`` and reused; the export
time is printed, it is what the default ``dvc repro`` pays per chorale).

- baseline: per file ``converter.parse(path, forceSource=True, quantizePost=False)``, flatten, collect
  every note and chord member (offset, end, pitch, velocity; tied notes joined), then seqlab's own
  ``quantize`` so both sides hold the same kind of note list; one process, as a person would write it;
- seqlab: the whole ``encode_corpus`` of the ``encode_midi`` stage (music21's low-level ``MidiFile``
  reader, quantize, encode, vocabulary, id arrays), with 1 worker and with ``--workers`` (0 = every CPU).

Before timing, every file's quantized notes from both readers are asserted equal (except where music21's
score-building step loses or misplaces a note the file holds: those files are listed), and the token
arrays of every worker count are asserted identical.  Medians of interleaved repeats (the baseline once
per repeat, it is slow): files/s, ratios, and CPU seconds of this process plus the pool's workers (on a
shared machine whose cores are busy, more workers cannot lower wall time; CPU seconds show what the pool
itself costs).  The work is pure Python (no torch threads); the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from music21 import chord, converter

from pipeline.config import EncodeMidiConfig, Music21Source, SplitConfig
from pipeline.midi.corpus import Prepared, encode_corpus, list_midi_files, prepare_piece
from pipeline.midi.events import Note, Piece, quantize
from pipeline.midi.io import export_music21_corpus
from pipeline.midi.pool import resolve_workers

SPQ = 4
RES = 10080  # music21's ticks per quarter: offsets in quarter notes * RES are exact integers for these files
CFG = EncodeMidiConfig(corpus="bach", encoding="event", split=SplitConfig(val=0.1, test=0.1))


def ensure_corpus(folder: Path, limit: int | None) -> list[Path]:
    if not list_midi_files(folder):
        start = time.perf_counter()
        export_music21_corpus(Music21Source(type="music21", composer="bach", limit=limit), folder)
        n = len(list_midi_files(folder))
        took = time.perf_counter() - start
        print(f"exported {n} works to {folder} in {took:.1f}s ({took / n * 1000:.0f} ms per work, all CPUs)")
    return list_midi_files(folder)


def baseline_notes(path: Path) -> tuple[tuple[Note, ...], bool]:
    """converter.parse + flatten: the naive reader, brought to the same quantized note list.

    music21 splits notes at barlines into tied notes, and its ``stripTies`` leaves some chains split,
    so ties are joined here, per part and pitch.  Returns (notes, consistent): ``consistent`` is False
    when music21's score has a tie continuation that does not start where its chain ended (its
    ``makeVoices`` misplaces a few tied notes); such a file cannot be compared note for note.
    """
    score = converter.parse(path, forceSource=True, quantizePost=False)
    notes: list[list[int]] = []
    consistent = True
    for part in score.parts:
        tied: dict[int, list[int]] = {}  # pitch -> [start, end, pitch, velocity] of an open tie chain
        for el in part.flatten().notes:
            start, end = round(float(el.offset) * RES), round(float(el.offset + el.quarterLength) * RES)
            for m in el.notes if isinstance(el, chord.Chord) else [el]:
                tie, pitch = m.tie if m.tie is not None else el.tie, m.pitch.midi
                if tie is not None and tie.type in ("continue", "stop") and pitch in tied:
                    consistent &= tied[pitch][1] == start
                    tied[pitch][1] = end
                    if tie.type == "stop":
                        notes.append(tied.pop(pitch))
                elif tie is not None and tie.type == "start":
                    tied[pitch] = [start, end, pitch, m.volume.velocity or 0]
                else:
                    notes.append([start, end, pitch, m.volume.velocity or 0])
        notes += tied.values()
    q, _ = quantize(Piece(tuple(Note(*n) for n in notes), RES), SPQ)
    return q.notes, consistent


def check_same_notes(files: list[Path]) -> None:
    """Assert both readers agree; list the files where converter.parse's score loses or misplaces MIDI notes."""
    misplaced, dropped = [], []
    for path in files:
        ours = prepare_piece((str(path), path.name, CFG))
        assert isinstance(ours, Prepared), (path, ours)
        theirs, consistent = baseline_notes(path)
        mine, other = sorted(n[:4] for n in ours.notes), sorted(n[:4] for n in theirs)
        if not consistent:
            misplaced.append(path.name)
        elif mine != other:
            # music21's notation step drops a note overlapping another in the same track; the file holds it
            assert set(other) < set(mine), f"{path}: the readers disagree"
            dropped.append(f"{path.name} ({len(mine) - len(other)} note)")
    equal = len(files) - len(misplaced) - len(dropped)
    print(f"checked: both readers give the same quantized notes for {equal} of {len(files)} files")
    print(f"  converter.parse drops overlapping notes the file holds: {', '.join(dropped) or 'none'}")
    print(f"  converter.parse misplaces tied notes: {', '.join(misplaced) or 'none'}")


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its finished children: the pool's workers)."""
    cpu0, start = os.times(), time.perf_counter()
    fn()
    wall, cpu1 = time.perf_counter() - start, os.times()
    cpu = sum(cpu1[:4]) - sum(cpu0[:4])
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("/tmp/seqlab-bench/bach"))
    parser.add_argument("--limit", type=int, default=0, help="export only the first N works (0: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    files = ensure_corpus(args.corpus, args.limit or None)
    assert len(files) >= 300 or args.limit, f"only {len(files)} files: the benchmark wants >= 300"
    check_same_notes(files)
    workers = resolve_workers(args.workers, len(files))
    ref = encode_corpus(args.corpus, CFG, "bench", workers=1)
    for w in {workers, 3}:
        other = encode_corpus(args.corpus, CFG, "bench", workers=w)
        assert all(np.array_equal(other.ids[s], ref.ids[s]) for s in ref.ids) and other.stats == ref.stats
    print(f"checked: identical token arrays with 1, {workers} and 3 workers")

    times: dict[str, list[tuple[float, float]]] = {"baseline": [], "seqlab 1 worker": [], f"seqlab {workers} workers": []}
    for _ in range(args.repeats):
        times["baseline"].append(timed(lambda: [baseline_notes(p) for p in files]))
        times["seqlab 1 worker"].append(timed(lambda: encode_corpus(args.corpus, CFG, "bench", workers=1)))
        times[f"seqlab {workers} workers"].append(timed(lambda: encode_corpus(args.corpus, CFG, "bench", workers=workers)))
    base = statistics.median(w for w, _ in times["baseline"])
    print(f"\n{len(files)} MIDI files, {sum(p.stat().st_size for p in files) / 1e6:.2f} MB, medians of {args.repeats}")
    print(f"{'':28} {'seconds':>9} {'files/s':>9} {'vs baseline':>12} {'CPU s':>8}")
    for name, ts in times.items():
        t, cpu = statistics.median(w for w, _ in ts), statistics.median(c for _, c in ts)
        print(f"{name:28} {t:9.2f} {len(files) / t:9.1f} {base / t:11.1f}x {cpu:8.2f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
