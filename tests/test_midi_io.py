"""music21 at the edges: the fast reader, bad files, the writer, decoding to MIDI, key analysis, corpus export."""

from __future__ import annotations

import random

import pytest
from music21 import environment

from pipeline.config import EncodeMidiConfig, Music21Source
from pipeline.midi.codec import EventCodec, NoteCodec
from pipeline.midi.corpus import Prepared, Skipped, prepare_piece
from pipeline.midi.events import Note, Piece, quantize
from pipeline.midi.io import (
    MidiExportError,
    MidiParseError,
    _export_one,
    decode_to_midi,
    export_music21_corpus,
    key_shift_to_c,
    read_midi,
    write_midi,
)
from pipeline.vocab import Vocabulary
from tests.midi_helpers import SCALE_G_MAJOR, drum_part, melody, note_bytes, raw_midi, write_score

CFG = EncodeMidiConfig(corpus="test")


def _prepare(path, cfg=CFG):
    return prepare_piece((str(path), path.name, cfg))


def test_reader_gets_pitch_onset_duration_velocity_channel_and_track(tmp_path):
    path = write_score(tmp_path / "m.mid", melody(["C4", "E4", "r", "G4"], [1, 0.5, 0.5, 2]), drum_part(2))
    piece = read_midi(path)
    assert piece.resolution == 10080  # music21 writes 10,080 ticks per quarter
    pitched = [(n.start / 10080, n.end / 10080, n.pitch) for n in piece.notes if n.channel != 10]
    assert pitched == [(0, 1, 60), (1, 1.5, 64), (2, 4, 67)]
    drums = [n for n in piece.notes if n.channel == 10]
    assert len(drums) == 2 and {n.track for n in drums}.isdisjoint(n.track for n in piece.notes if n.channel != 10)
    assert all(n.velocity > 0 for n in piece.notes)


def test_writer_and_reader_agree_exactly(tmp_path):
    notes = (Note(0, 4, 60, 100), Note(2, 3, 64, 30, channel=2, program=40, track=1), Note(4, 5, 36, 90, channel=10, track=2),
             Note(4, 8, 60, 70))  # fmt: skip
    write_midi(Piece(notes, 4), tmp_path / "w.mid")
    back, stats = quantize(read_midi(tmp_path / "w.mid"), 4)
    assert [n._replace(track=0) for n in back.notes] == sorted(
        (n._replace(track=0) for n in notes), key=lambda n: (n.start, n.pitch, n.end)
    )
    assert [n.track for n in back.notes] == [1, 2, 3, 1]  # one track per source track, after the tempo track
    assert stats.moved == stats.merged == 0


# --------------------------------------------------------------------------- bad input: skipped with a reason


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("text.mid", b"this is a README, not a MIDI file\n", "not a MIDI file"),
        ("empty.mid", b"", "not a MIDI file"),
        ("zero-division.mid", raw_midi([note_bytes(60, 0, 480)], ticks_per_quarter=0), "0 ticks per quarter"),
        ("missing-track.mid", raw_midi([note_bytes(60, 0, 480)], declared_tracks=3), "truncated"),
        ("bad-chunk.mid", raw_midi([note_bytes(60, 0, 480)]).replace(b"MTrk", b"XTrk"), "MTrk"),
        ("format2.mid", raw_midi([note_bytes(60, 0, 480)])[:8] + b"\x00\x02" + raw_midi([note_bytes(60, 0, 480)])[10:],
         "format"),
    ],
)  # fmt: skip
def test_unreadable_files_raise_one_clear_error_and_are_skipped(tmp_path, name, data, reason):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(MidiParseError, match=reason) as err:
        read_midi(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    skipped = _prepare(path)
    assert isinstance(skipped, Skipped) and reason in skipped.reason and skipped.file == name


def test_truncated_real_file_is_skipped(tmp_path):
    full = write_score(tmp_path / "full.mid", melody(SCALE_G_MAJOR))
    cut = tmp_path / "cut.mid"
    cut.write_bytes(full.read_bytes()[: len(full.read_bytes()) * 2 // 3])
    result = _prepare(cut)
    assert isinstance(result, Skipped) and result.reason.startswith("not a readable MIDI file (truncated: track")


def test_corrupt_bytes_never_crash(tmp_path):
    good = write_score(tmp_path / "good.mid", melody(SCALE_G_MAJOR), drum_part(4)).read_bytes()
    rng = random.Random(7)
    outcomes = set()
    for i in range(40):
        data = bytearray(good)
        for _ in range(rng.randint(1, 30)):  # flip bytes anywhere, header included
            data[rng.randrange(len(data))] = rng.randrange(256)
        path = tmp_path / f"corrupt{i}.mid"
        path.write_bytes(bytes(data))
        result = _prepare(path)
        assert isinstance(result, (Prepared, Skipped))
        outcomes.add(type(result).__name__)
    assert "Skipped" in outcomes


def test_file_without_notes_is_skipped(tmp_path):
    path = write_score(tmp_path / "rests.mid", melody(["r", "r"], 2))
    assert read_midi(path).notes == ()
    assert _prepare(path) == Skipped("rests.mid", "no notes")


def test_drums_only_is_skipped_unless_drums_are_kept(tmp_path):
    path = write_score(tmp_path / "drums.mid", drum_part(8))
    skipped = _prepare(path)
    assert isinstance(skipped, Skipped) and skipped.reason.startswith("drums only (8 notes on channel 10")
    kept = _prepare(path, EncodeMidiConfig(corpus="test", keep_drums=True))
    assert isinstance(kept, Prepared) and len(kept.notes) == 8


def test_absurd_tick_values_are_skipped(tmp_path):
    # a note held for 2^28 - 1 ticks (the largest MIDI delta time): 559,240 quarter notes at 480 per quarter
    path = tmp_path / "absurd.mid"
    path.write_bytes(raw_midi([note_bytes(60, 0, 480) + note_bytes(62, 0, 0x0FFFFFFF)]))
    skipped = _prepare(path)
    assert isinstance(skipped, Skipped) and skipped.reason.startswith("absurd tick values: notes reach quarter note 559")
    assert isinstance(_prepare(path, EncodeMidiConfig(corpus="t", max_quarters=1e6)), Prepared)


def test_note_never_switched_off_ends_with_its_track(tmp_path):
    body = note_bytes(60, 0, 480) + b"\x00\x90\x40\x50" + b"\x83\x60\x90\x43\x50"  # on 64 at 480; on 67 at 960
    path = tmp_path / "hanging.mid"
    path.write_bytes(raw_midi([body]))
    notes = read_midi(path).notes
    assert [(n.start, n.end, n.pitch) for n in notes] == [(0, 480, 60), (480, 960, 64), (960, 960, 67)]
    q, _ = quantize(read_midi(path), 4)
    assert q.notes[-1][:3] == (8, 9, 67)  # zero length on the grid keeps one step


def test_one_note_off_ends_every_note_on_it_follows_as_music21_does(tmp_path):
    # on 60 at 0, on 60 at 240, off 60 at 480, a stray off 60 at 960
    body = b"\x00\x90\x3c\x50" + b"\x81\x70\x90\x3c\x60" + b"\x81\x70\x80\x3c\x00" + b"\x83\x60\x80\x3c\x00"
    path = tmp_path / "overlap.mid"
    path.write_bytes(raw_midi([body]))
    assert [(n.start, n.end, n.velocity) for n in read_midi(path).notes] == [(0, 480, 80), (240, 480, 96)]
    q, stats = quantize(read_midi(path), 4)
    assert [n[:4] for n in q.notes] == [(0, 4, 60, 96)] and stats.merged == 1


# --------------------------------------------------------------------------- decode, key, export


@pytest.mark.parametrize("codec", [NoteCodec(), EventCodec(velocity_bins=8)], ids=["note", "event"])
def test_decode_to_midi_from_vocabulary_alone(tmp_path, codec):
    notes = [Note(0, 4, 60, 100), Note(0, 4, 64, 100), Note(4, 6, 67, 50), Note(8, 12, 72, 50)]
    tokens = codec.encode(notes)
    vocab = Vocabulary.build({t: 1 for t in tokens}, meta=codec.meta())
    vocab.save(tmp_path / "vocab.json")
    loaded = Vocabulary.load(tmp_path / "vocab.json")
    ids = [*loaded.encode(tokens).tolist(), 2, *loaded.encode(tokens[:1]).tolist()]  # stops at <eos>
    written = decode_to_midi(ids, loaded, tmp_path / "out.mid")
    back, _ = quantize(read_midi(tmp_path / "out.mid"), codec.steps_per_quarter)
    assert [n[:3] for n in back.notes] == [n[:3] for n in written]
    assert codec.encode(list(back.notes)) == tokens
    assert decode_to_midi(tokens, loaded, tmp_path / "out2.mid") == written  # strings work as well as ids


def test_key_analysis_moves_g_major_to_c_and_d_minor_to_a_minor(tmp_path):
    g_major = read_midi(write_score(tmp_path / "g.mid", melody(SCALE_G_MAJOR)))
    assert key_shift_to_c(g_major.notes, g_major.resolution) == 5
    d_minor_notes = ["D4", "E4", "F4", "G4", "A4", "B-4", "C#5", "D5", "A4", "F4", "D4"]
    d_minor = read_midi(write_score(tmp_path / "d.mid", melody(d_minor_notes)))
    assert key_shift_to_c(d_minor.notes, d_minor.resolution) == -5
    assert key_shift_to_c([], 4) == 0
    normalised = _prepare(tmp_path / "g.mid", EncodeMidiConfig(corpus="t", normalize_key=True))
    assert normalised.key_shift == 5 and normalised.notes[0].pitch == 67 + 5


def test_export_music21_works_to_real_midi_files_without_a_pickle_cache(tmp_path):
    scratch = environment.Environment().getRootTempDir()
    before = set(scratch.rglob("*")) if scratch.exists() else set()
    export_music21_corpus(Music21Source(type="music21", paths=("bach/bwv66.6",)), tmp_path / "a", workers=1)
    export_music21_corpus(Music21Source(type="music21", composer="bach", limit=2), tmp_path / "b", workers=2)
    assert [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*.mid"))] == [
        "a/bach/bwv66.6.mid", "b/bach/bwv1.6.mid", "b/bach/bwv10.7.mid",
    ]  # fmt: skip
    chorale = read_midi(tmp_path / "a/bach/bwv66.6.mid")
    assert len({n.track for n in chorale.notes}) == 4 and len(chorale.notes) > 100
    after = set(scratch.rglob("*")) if scratch.exists() else set()
    assert not [p for p in after - before if ".p" in p.suffixes]  # forceSource: no pickles


def test_export_errors_are_clear(tmp_path):
    with pytest.raises(MidiExportError, match="no .* works by composer 'nobody'"):
        export_music21_corpus(Music21Source(type="music21", composer="nobody"), tmp_path)
    with pytest.raises(MidiExportError, match="no work 'bach/bwv0.0'"):
        export_music21_corpus(Music21Source(type="music21", paths=("bach/bwv0.0",)), tmp_path)
    with pytest.raises(MidiExportError, match="names no works"):
        export_music21_corpus(Music21Source(type="music21", composer="bach", limit=0), tmp_path)


def test_a_work_music21_cannot_export_is_skipped_not_fatal(tmp_path):
    broken = tmp_path / "broken.mxl"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    written, why = _export_one((str(broken), str(tmp_path / "out" / "broken.mid")))
    assert written == 0 and why and not (tmp_path / "out" / "broken.mid").exists()


def test_a_file_of_several_works_gives_one_midi_file_per_work(tmp_path):
    abc = tmp_path / "two.abc"
    abc.write_text("X:1\nT:One\nM:4/4\nL:1/4\nK:C\nCDEF|G4|]\n\nX:2\nT:Two\nM:3/4\nL:1/4\nK:G\nGAB|d3|]\n")
    written, why = _export_one((str(abc), str(tmp_path / "out" / "two.mid")))
    assert (written, why) == (2, None)
    assert [len(read_midi(tmp_path / "out" / f"two-00{i}.mid").notes) for i in (1, 2)] == [5, 4]
