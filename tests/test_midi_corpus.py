"""A folder of MIDI files -> token dataset: splits, skips, augmentation, worker independence, the stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import ConfigError, EncodeMidiConfig, SplitConfig, parse_params
from pipeline.midi.corpus import MidiCorpusError, assign_splits, encode_corpus
from pipeline.vocab import EOS_ID, UNK_ID, Vocabulary
from stages import encode_midi
from tests.midi_helpers import drum_part, melody, note_bytes, raw_midi, small_corpus, write_score

SPLIT = SplitConfig(method="random", val=0.2, test=0.2, seed=3)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    """Ten usable two-part pieces in a sub-folder, plus two files that must be skipped."""
    root = tmp_path_factory.mktemp("raw") / "tunes"
    small_corpus(root / "set", 10)
    (root / "README.mid").write_text("not midi")
    write_score(root / "drums.MID", drum_part(4))
    (root / "notes.txt").write_text("ignored: not a .mid file")
    return root


def _cfg(**kw) -> EncodeMidiConfig:
    return EncodeMidiConfig(**{"corpus": "tunes", "split": SPLIT, **kw})


def test_corpus_is_split_by_piece_and_every_piece_ends_with_eos(corpus_dir):
    data = encode_corpus(corpus_dir, _cfg(encoding="event"), "tunes-event", workers=1)
    s = data.stats
    assert s["files"] == 12 and s["skipped"] == 2
    assert [(x.file, x.reason.split(" (")[0]) for x in data.skipped] == [
        ("README.mid", "not a readable MIDI file"), ("drums.MID", "drums only"),
    ]  # fmt: skip
    assert (s["train"]["pieces"], s["val"]["pieces"], s["test"]["pieces"]) == (6, 2, 2)
    for split in ("train", "val", "test"):
        ids = data.ids[split]
        assert int(np.count_nonzero(ids == EOS_ID)) == s[split]["records"] == s[split]["pieces"]
        assert ids[-1] == EOS_ID and s[split]["tokens"] == ids.size
        assert s[split]["unk_rate"] == pytest.approx(np.mean(ids == UNK_ID), abs=1e-6)
    assert s["train"]["notes"] + s["val"]["notes"] + s["test"]["notes"] == 10 * (7 + 3)  # melody + bass per piece
    assert s["train"]["unk_rate"] == 0.0 and data.vocab.meta["encoding"] == "event"


def test_results_do_not_depend_on_the_number_of_workers(corpus_dir):
    cfg = _cfg(encoding="note", transpose=(-1, 2), normalize_key=False)
    one = encode_corpus(corpus_dir, cfg, "x", workers=1)
    two = encode_corpus(corpus_dir, cfg, "x", workers=2)
    three = encode_corpus(corpus_dir, cfg, "x", workers=3)
    for other in (two, three):
        assert other.vocab.tokens == one.vocab.tokens and other.stats == one.stats and other.skipped == one.skipped
        for split in one.ids:
            assert np.array_equal(other.ids[split], one.ids[split])


def test_transposition_augments_the_training_split_only(corpus_dir):
    plain = encode_corpus(corpus_dir, _cfg(), "x", workers=1)
    aug = encode_corpus(corpus_dir, _cfg(transpose=(-2, 0, 3)), "x", workers=1)
    assert aug.stats["train"]["records"] == 3 * plain.stats["train"]["records"]  # original, -2, +3 (0 is the original)
    for key in ("pieces", "records", "notes", "tokens"):  # val/test are not augmented (their <unk>s may differ)
        assert aug.stats["val"][key] == plain.stats["val"][key] and aug.stats["test"][key] == plain.stats["test"][key]
    assert aug.stats["train"]["pieces"] == plain.stats["train"]["pieces"]
    assert len(aug.vocab) > len(plain.vocab)


def test_min_freq_turns_rare_tokens_into_unk_and_voices_top_is_monophonic(corpus_dir):
    rare = encode_corpus(corpus_dir, _cfg(min_freq=3), "x", workers=1)
    assert rare.stats["train"]["unk_rate"] > 0
    top = encode_corpus(corpus_dir, _cfg(voices="top"), "x", workers=1)
    assert all("." not in t for t in top.vocab.tokens)  # no chord tokens in a melody
    assert top.stats["train"]["notes"] < rare.stats["train"]["notes"]


def test_too_many_skipped_files_or_none_usable_fail_clearly(tmp_path):
    small_corpus(tmp_path / "a", 2)
    for i in range(3):
        (tmp_path / "a" / f"bad{i}.mid").write_bytes(b"\x00" * i)
    with pytest.raises(MidiCorpusError, match=r"3 of 5 MIDI files skipped \(60% > encode_midi.x.max_skipped_share 20%\)"):
        encode_corpus(tmp_path / "a", _cfg(), "x", workers=1)
    assert encode_corpus(tmp_path / "a", _cfg(max_skipped_share=0.7), "x", workers=1).stats["skipped"] == 3
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.mid").write_bytes(raw_midi([note_bytes(60, 0, 0x0FFFFFFF)]))
    with pytest.raises(MidiCorpusError, match="none of the 1 MIDI files is usable .*absurd tick values"):
        encode_corpus(tmp_path / "b", _cfg(), "x", workers=1)
    (tmp_path / "c").mkdir()
    with pytest.raises(MidiCorpusError, match="no .mid/.midi files"):
        encode_corpus(tmp_path / "c", _cfg(), "x", workers=1)


def test_assign_splits_is_seeded_and_keeps_small_splits_alive():
    a = assign_splits(20, SplitConfig(val=0.1, test=0.1, seed=1))
    assert a == assign_splits(20, SplitConfig(val=0.1, test=0.1, seed=1)) != assign_splits(20, SplitConfig(seed=2))
    assert (a.count("train"), a.count("val"), a.count("test")) == (16, 2, 2)
    assert assign_splits(3, SplitConfig(val=0.01, test=0.01)).count("train") == 1
    assert assign_splits(1, SplitConfig(val=0.4, test=0.4)) == ["train"]
    assert assign_splits(5, SplitConfig(method="contiguous", val=0.2, test=0.2)) == ["train"] * 3 + ["val", "test"]


def test_config_checks_the_corpus_reference_and_option_combinations():
    corpora = {
        "tunes": {"kind": "midi", "source": {"type": "path", "path": "x"}},
        "text": {"kind": "text", "source": {"type": "path", "path": "y"}},
        "off": {"kind": "midi", "enabled": False, "source": {"type": "path", "path": "z"}},
    }
    ok = parse_params({"corpora": corpora, "encode_midi": {"d": {"corpus": "tunes", "transpose": [-1, 1]}}}, "p.yaml")
    assert ok.encode_midi["d"].transpose == (-1, 1)
    for corpus, message in (("nope", "unknown corpus 'nope'"), ("text", "is a text corpus, not midi"),
                            ("off", "is disabled")):  # fmt: skip
        with pytest.raises(ConfigError, match=f"encode_midi.d.corpus: .*{message}"):
            parse_params({"corpora": corpora, "encode_midi": {"d": {"corpus": corpus}}}, "p.yaml")
    for bad, message in (({"velocity_bins": 4}, "event only"), ({"encoding": "event", "chords": "pitch_classes"},
                         "note only"), ({"split": {"method": "files", "files": {"train": "a", "val": "b", "test": "c"}}},
                         "text corpora"), ({"encodng": "note"}, "unknown key 'encodng'")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            parse_params({"corpora": corpora, "encode_midi": {"d": {"corpus": "tunes", **bad}}}, "p.yaml")


# --------------------------------------------------------------------------- the stage


PARAMS = """
corpora:
  tunes: {kind: midi, source: {type: path, path: unused}}
encode_midi:
  tunes-note: {corpus: tunes, encoding: note, chords: pitch_classes, normalize_key: true,
               split: {method: random, val: 0.2, test: 0.2, seed: 3}}
  tunes-strict: {corpus: tunes, max_skipped_share: 0.0}
"""


def test_stage_writes_every_output_and_decodes_from_vocab_json(corpus_dir, tmp_path, capsys):
    (tmp_path / "params.yaml").write_text(PARAMS)
    out = tmp_path / "data/tokens/tunes-note"
    args = ["--params", str(tmp_path / "params.yaml"), "--raw", str(corpus_dir), "--workers", "2"]
    assert encode_midi.main([*args, "--name", "tunes-note", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["skipped.json", "stats.json", "test.npy", "train.npy",
                                                      "val.npy", "vocab.json"]  # fmt: skip
    assert "encode_midi: tunes-note: 10/12 files" in capsys.readouterr().out
    skipped = json.loads((out / "skipped.json").read_text())
    assert [s["file"] for s in skipped] == ["README.mid", "drums.MID"]
    vocab = Vocabulary.load(out / "vocab.json")
    assert vocab.meta["kind"] == "midi" and vocab.meta["chords"] == "pitch_classes"
    from pipeline.midi import decode_to_midi, render_piano_roll

    notes = decode_to_midi(np.load(out / "val.npy"), vocab, tmp_path / "val.mid")
    assert notes and (tmp_path / "val.mid").read_bytes()[:4] == b"MThd"
    png = render_piano_roll(np.load(out / "val.npy"), vocab, tmp_path / "val.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stage_errors_are_one_line_and_exit_2(corpus_dir, tmp_path, capsys):
    (tmp_path / "params.yaml").write_text(PARAMS)
    args = ["--params", str(tmp_path / "params.yaml"), "--raw", str(corpus_dir), "--out", str(tmp_path / "o")]
    assert encode_midi.main([*args, "--name", "nope"]) == 2
    assert "encode_midi: no dataset 'nope' (valid: tunes-note, tunes-strict)" in capsys.readouterr().err
    assert encode_midi.main([*args, "--name", "tunes-strict"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqlab: error: ") and err.count("\n") == 1 and "max_skipped_share" in err
    listing = tmp_path / "o" / "skipped.json"
    assert f"every skipped file and its reason: {listing}" in err
    # No dataset is written, only the full list of what was skipped and why (the error line shows three)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["skipped.json"]
    skipped = json.loads(listing.read_text())
    assert skipped and all(entry["file"] and entry["reason"] for entry in skipped)


def test_roundtrip_command_on_a_jazz_combo_drops_drums_unless_asked(tmp_path, capsys):
    from stages import cli
    from tests.midi_helpers import jazz_combo

    song = jazz_combo(tmp_path / "combo.mid", bars=2)
    assert cli.main(["midi", "roundtrip", str(song), str(tmp_path / "out.mid"), "--encoding", "event"]) == 0
    out = capsys.readouterr().out
    assert "40 notes read (16 drum notes dropped)" in out and "24 notes written, 24 read back; identical" in out
    args = ["midi", "roundtrip", str(song), str(tmp_path / "d.mid"), "--encoding", "event", "--keep-drums"]
    assert cli.main([*args, "--png", str(tmp_path / "d.png")]) == 0
    out = capsys.readouterr().out
    assert "(0 drum notes dropped)" in out and "40 notes written, 40 read back" in out
    assert (tmp_path / "d.png").stat().st_size > 1000
    # note encoding: the bass and chords held under one another are held notes again, not re-struck per slice
    assert cli.main(["midi", "roundtrip", str(song), str(tmp_path / "n.mid")]) == 0
    assert "24 notes written, 24 read back; identical" in capsys.readouterr().out
    shutil.copy(song, tmp_path / "copy.mid")
    (tmp_path / "bad.mid").write_bytes(b"RIFF....")
    assert cli.main(["midi", "roundtrip", str(tmp_path / "bad.mid"), str(tmp_path / "x.mid")]) == 2
    assert "cannot be encoded: not a readable MIDI file" in capsys.readouterr().err
    assert cli.main(["midi", "roundtrip", str(song), str(tmp_path / "x.mid"), "--velocity-bins", "4"]) == 2
    assert "event only" in capsys.readouterr().err


def test_piano_roll_from_a_midi_file_and_tokens_need_their_vocabulary(tmp_path):
    from pipeline.midi import render_piano_roll

    song = write_score(tmp_path / "m.mid", melody([60, 64, 67], [1, 1, 2]))
    assert render_piano_roll(song, None, tmp_path / "m.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="need the vocabulary"):
        render_piano_roll(["60_4"], None, tmp_path / "t.png")


@pytest.mark.parametrize("quarters, pitches", [(1, (0, 1)), (64, (60, 72)), (1000, (21, 108)), (40, (120, 127))])
def test_piano_roll_fixed_margins_keep_every_label_and_the_title_inside_the_picture(quarters, pitches):
    """The margins are fixed (no layout engine): short, long, low and high pieces keep their texts whole."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from pipeline.midi.events import Note, Piece
    from pipeline.midi.pianoroll import HEIGHT_IN, piano_roll_plot

    notes = tuple(Note(i * quarters, (i + 1) * quarters, p, 80, 0, 0, 0) for i, p in enumerate(pitches))
    fig = piano_roll_plot(Piece(notes, 1), "sample_00.mid")
    FigureCanvasAgg(fig).draw()
    width, height = fig.bbox.width, fig.bbox.height
    assert (width, height) == (100 * min(20.0, 4.0 + len(pitches) * quarters / 8), 100 * HEIGHT_IN)
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    texts = [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels(), *ax.get_yticklabels()]
    shown = [t for t in texts if t.get_visible() and t.get_text()]
    assert len(shown) >= 5
    for text in shown:
        box = text.get_window_extent(renderer)
        if ax.get_xlim()[0] <= text.get_position()[0] <= ax.get_xlim()[1] or text not in ax.get_xticklabels():
            assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, text.get_text()


def test_default_dataset_on_real_chorales_exported_in_the_test(tmp_path):
    """The repository's own params.yaml entry, on four Bach chorales exported from music21's corpus."""
    from pipeline.config import Music21Source, load_params
    from pipeline.midi.codec import EventCodec
    from pipeline.midi.events import Piece, quantize
    from pipeline.midi.io import export_music21_corpus, read_midi, write_midi
    from tests.conftest import REPO_ROOT

    raw = tmp_path / "raw/chorales"
    export_music21_corpus(Music21Source(type="music21", composer="bach", limit=4), raw)
    cfg = load_params(REPO_ROOT / "params.yaml").encode_midi["chorales-note"]
    data = encode_corpus(raw, cfg, "chorales-note", workers=2)
    assert data.stats["files"] == 4 and data.stats["skipped"] == 0 and data.stats["key_shifted_pieces"] >= 1
    assert data.vocab.meta["chords"] == "pitch_classes" and any(t.startswith("c") for t in data.vocab.tokens[3:])
    # event encoding: tokens -> MIDI file -> tokens is exact on real four-part music
    codec = EventCodec()
    for path in sorted(raw.rglob("*.mid"))[:2]:
        q, _ = quantize(read_midi(path), 4)
        tokens = codec.encode([n for n in q.notes if n.channel != 10])
        write_midi(Piece(tuple(codec.decode(tokens)), 4), tmp_path / "rt.mid")
        back, stats = quantize(read_midi(tmp_path / "rt.mid"), 4)
        assert codec.encode(back.notes) == tokens and stats.moved == 0
