"""Your own MIDI folder, as README's section of that name runs it: a folder of .mid files as a `path` corpus,
through a real `dvc repro` (download -> encode_midi -> train -> evaluate + baseline -> report) to judged samples."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from music21 import chord, instrument, note, stream

from pipeline.midi.io import read_midi
from tests.test_pipeline_dvc import _run, make_repo

pytestmark = pytest.mark.slow

DATASET, CAP = "solos-note", 1.0
STAGES = ("download", "encode_midi", "train", "evaluate", "baseline", "report")


def jazz_solo(path: Path, shift: int) -> Path:
    """A solo over comping: swung eighth lines with chromatic approach notes, a held note, rests; ii-V-I chords."""
    solo, comp = stream.Part(), stream.Part()
    solo.insert(0, instrument.TenorSaxophone())
    comp.insert(0, instrument.Piano())
    line = [("D5", 0.75), ("F5", 0.25), ("A5", 0.75), ("G#5", 0.25), ("G5", 1.0), ("r", 1.0),
            ("F5", 0.75), ("E5", 0.25), ("D5", 0.5), ("B4", 0.5), ("C#5", 0.5), ("D5", 1.5),
            ("E5", 3.0), ("r", 1.0)]
    for _ in range(2):
        for pitch, ql in line:
            solo.append(note.Rest(quarterLength=ql) if pitch == "r" else note.Note(pitch, quarterLength=ql))
        for names in (["D3", "F3", "A3", "C4"], ["G2", "F3", "B3", "E4"], ["C3", "E3", "G3", "B3"]):
            comp.append(chord.Chord(names, quarterLength=1.5))
            comp.append(note.Rest(quarterLength=0.5))
        comp.append(note.Rest(quarterLength=2.0))
    score = stream.Score([solo, comp]).transpose(shift)
    score.write("midi", fp=str(path))
    return path


def solos(params: dict) -> None:
    """One tiny GRU on a folder of solos, with an n-gram to beat; nothing else in the pipeline."""
    params["corpora"] = {"solos": {"kind": "midi", "description": "jazz solos made in the test",
                                   "source": {"type": "path", "path": "../solos", "pattern": "*.mid"}}}
    params["encode_midi"] = {DATASET: {"corpus": "solos", "encoding": "note", "min_freq": 1,
                                       "split": {"method": "random", "val": 0.2, "test": 0.2, "seed": 7}}}
    for section in [s for s in params if s not in ("corpora", "encode_midi", "train", "evaluate")]:
        del params[section]
    params["train"]["defaults"].update(epochs=2, threads=1, progress=False, tracking="none", batch_size=2,
                                       bptt=16, eval_bptt=64, checkpoint_every_steps=1000, sample={"n": 0})
    params["train"]["runs"] = {f"{DATASET}-gru": {"dataset": DATASET, "variant": "gru",
                                                   "model": {"cell": "gru", "embedding_size": 8, "hidden_size": 16}}}
    params["evaluate"].update(device="cpu", baselines={DATASET: {"order": 2}}, register_champion=False,
                              samples={"n": 3, "max_length": 120, "temperature": 1.0, "top_k": None, "top_p": None,
                                       "max_note_quarters": CAP, "forbid_sounding_note_on": False})


def test_a_folder_of_midi_files_goes_to_judged_samples_in_one_dvc_repro(tmp_path):
    folder = tmp_path / "solos"
    folder.mkdir()
    for i, shift in enumerate((0, 2, -3, 5, 7)):
        jazz_solo(folder / f"solo{i}.mid", shift)
    repo = make_repo(tmp_path, solos)
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    pipeline["stages"] = {k: v for k, v in pipeline["stages"].items() if k in STAGES}
    pipeline["stages"]["download"]["deps"].append("../solos")  # README: the folder is the download's dependency
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))

    result = _run([sys.executable, "-m", "dvc", "repro"], repo)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    stats = json.loads((repo / f"data/tokens/{DATASET}/stats.json").read_text())
    assert stats["files"] == 5 and stats["skipped"] == 0 and stats["test"]["pieces"] == 1
    for variant in ("gru", "ngram"):
        music = json.loads((repo / f"metrics/{DATASET}/{variant}.json").read_text())["music"]
        assert music["pieces"] == 3 and music["max_note_quarters"] == CAP
        for key in ("pitch_class_histogram_distance", "note_length_histogram_distance", "ioi_histogram_distance"):
            assert 0 <= music[key] <= 1
        assert music["polyphony"] >= 1 and 0 <= music["in_key_share"] <= 1
        assert music["reference"]["split"] == "test" and music["floor"]["splits"] == "val-test"
        sampled = sorted((repo / f"samples/{DATASET}/{variant}").glob("sample_*.mid"))
        assert len(sampled) == 3
        pieces = [read_midi(p) for p in sampled]
        assert sum(len(p.notes) for p in pieces) == music["notes"]
        assert all(n.end - n.start <= CAP * p.resolution for p in pieces for n in p.notes)  # the cap holds
    summary = (repo / "reports/summary.md").read_text()
    assert "# Music: samples against real pieces" in summary and "val vs test" in summary
    assert (repo / "reports/music.png").stat().st_size > 1000
    assert "evaluate: solos-note-gru" in result.stdout and "closed" in result.stdout
