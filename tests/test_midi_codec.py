"""The ``note`` and ``event`` encodings: examples, lenient decoding, and the round-trip properties."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.midi.codec import CodecError, EventCodec, NoteCodec, codec_from_meta, decode_capped, make_codec
from pipeline.midi.events import DEFAULT_VELOCITY, Note, Piece, quantize
from tests import note_strategies

# --------------------------------------------------------------------------- examples


def test_note_encoding_names_notes_chords_and_rests_with_their_length():
    notes = [Note(0, 4, 60), Note(0, 4, 64), Note(0, 4, 67), Note(6, 8, 62)]
    assert NoteCodec().encode(notes) == ["60.64.67_4", "r_2", "62_2"]


def test_note_encoding_cuts_slices_at_every_onset_and_offset():
    held = [Note(0, 8, 48), Note(0, 2, 60), Note(2, 4, 62), Note(4, 8, 64)]
    assert NoteCodec().encode(held) == ["48.60_2", "48.62_2", "48.64_4"]


def test_long_durations_and_rests_take_several_tokens_largest_first():
    codec = NoteCodec(steps_per_quarter=4, max_steps=16)
    assert codec.encode([Note(37, 37 + 20, 60)]) == ["r_16", "r_16", "r_5", "60_16", "60_4"]


def test_pitch_class_chords_keep_classes_and_single_notes_keep_octaves():
    codec = NoteCodec(chords="pitch_classes")
    notes = [Note(0, 4, 48), Note(0, 4, 64), Note(0, 4, 67), Note(4, 6, 71), Note(6, 8, 36), Note(6, 8, 48)]
    assert codec.encode(notes) == ["c0.4.7_4", "71_2", "36_2"]  # C2+C3 is one pitch class: the lowest note
    assert [(n.start, n.end, n.pitch) for n in codec.decode(["c0.4.7_4"])] == [(0, 4, 60), (0, 4, 64), (0, 4, 67)]


def _spans(notes) -> list[tuple[int, int, int]]:
    return [(n.start, n.end, n.pitch) for n in notes]


def test_note_decoding_holds_a_pitch_across_slices_instead_of_striking_it_again():
    held = [Note(0, 8, 48), Note(0, 2, 60), Note(2, 4, 62), Note(4, 8, 64)]  # a bass under a moving melody
    tokens = NoteCodec().encode(held)
    assert tokens == ["48.60_2", "48.62_2", "48.64_4"]
    assert _spans(NoteCodec().decode(tokens)) == [(0, 8, 48), (0, 2, 60), (2, 4, 62), (4, 8, 64)]  # 4 notes, not 6
    # pitch-class chords sound at C4..B4, so C4 in a chord and C4 alone is one held note too
    assert _spans(NoteCodec(chords="pitch_classes").decode(["c0.4.7_2", "60_2"])) == [(0, 4, 60), (0, 2, 64), (0, 2, 67)]


@pytest.mark.parametrize(("tokens", "spans"), [
    (["60_4", "60_4"], [(0, 4, 60), (4, 8, 60)]),  # the same slice twice: only a re-attack cuts there
    (["60_16", "60_4"], [(0, 20, 60)]),  # a full max_steps chunk then more: one long note split by the encoder
    (["60.64_2", "60.64_2"], [(0, 2, 60), (0, 2, 64), (2, 4, 60), (2, 4, 64)]),
    (["60.64_2", "60_2", "60.64_2"], [(0, 6, 60), (0, 2, 64), (4, 6, 64)]),
    (["60_4", "r_2", "60_4"], [(0, 4, 60), (6, 10, 60)]),
    (["60_4", "<unk>", "60_4", "<eos>", "62_4"], [(0, 4, 60), (4, 8, 60)]),
])
def test_note_decoding_strikes_again_only_where_the_encoder_marks_a_re_attack(tokens, spans):
    assert _spans(NoteCodec(4, 16).decode(tokens)) == spans


@pytest.mark.parametrize(("codec", "tokens", "spans", "closed"), [
    (EventCodec(), ["on_60", "shift_16", "shift_16", "on_64", "shift_2"], [(0, 16, 60), (32, 34, 64)], 1),  # never off
    (EventCodec(), ["on_60", "shift_16", "off_60"], [(0, 16, 60)], 0),  # exactly 4 quarters is allowed
    (NoteCodec(), ["60_16", "60_16", "60.64_4"], [(0, 16, 60), (32, 36, 64)], 1),  # a pitch held 9 quarters
    (NoteCodec(), ["60.64_12", "60_12"], [(0, 16, 60), (0, 12, 64)], 1),
])
def test_decoding_closes_notes_held_longer_than_the_cap_and_counts_them(codec, tokens, spans, closed):
    decoded = decode_capped(codec, tokens, max_note_quarters=4)
    assert _spans(decoded.notes) == spans and decoded.closed == closed
    assert decode_capped(codec, tokens, None).closed == 0  # no cap: every length kept
    assert decode_capped(codec, ["on_60", "shift_3"] if isinstance(codec, EventCodec) else ["60_3"], 0.5).closed == 1


def test_event_encoding_orders_offs_before_ons_and_bins_velocity():
    codec = EventCodec(velocity_bins=4)
    notes = [Note(0, 2, 60, velocity=100), Note(2, 3, 60, velocity=20), Note(2, 4, 64, velocity=20)]
    assert codec.encode(notes) == [
        "vel_4", "on_60", "shift_2", "off_60", "vel_1", "on_60", "on_64", "shift_1", "off_60", "shift_1", "off_64",
    ]  # fmt: skip


def test_event_decoding_is_lenient_with_sampled_sequences():
    codec = EventCodec()
    tokens = ["<pad>", "on_60", "<unk>", "off_62", "shift_2", "on_60", "shift_1", "on_64", "<eos>", "on_70"]
    # off for a silent pitch ignored, on for a sounding pitch re-attacks, dangling notes last to the end (>= 1 step)
    assert [(n.start, n.end, n.pitch) for n in codec.decode(tokens)] == [(0, 2, 60), (2, 3, 60), (3, 4, 64)]
    assert all(n.velocity == DEFAULT_VELOCITY for n in codec.decode(tokens))


def test_foreign_tokens_are_a_clear_error():
    with pytest.raises(CodecError, match="'60_4' is not an event token"):
        EventCodec().decode(["60_4"])
    with pytest.raises(CodecError, match="on_60"):
        NoteCodec().decode(["on_60"])
    with pytest.raises(CodecError, match="128"):
        NoteCodec().decode(["128_4"])
    with pytest.raises(CodecError, match="vel_3"):
        EventCodec(velocity_bins=0).decode(["vel_3"])


def test_codec_from_meta_rebuilds_the_codec_and_rejects_other_vocabularies():
    codec = make_codec("event", steps_per_quarter=3, velocity_bins=8)
    assert codec_from_meta(codec.meta()) == codec and codec.max_steps == 12
    note = make_codec("note", chords="pitch_classes")
    assert codec_from_meta(note.meta()) == note
    with pytest.raises(CodecError, match="not a MIDI vocabulary"):
        codec_from_meta({"kind": "text", "level": "char"})
    with pytest.raises(CodecError, match="lacks 'max_steps'"):
        codec_from_meta({"kind": "midi", "encoding": "note", "steps_per_quarter": 4})
    with pytest.raises(CodecError, match="unknown MIDI encoding"):
        make_codec("pianoroll")


def test_importing_the_pure_modules_loads_neither_music21_nor_matplotlib():
    code = (
        "import sys, pipeline.midi, pipeline.midi.codec, pipeline.midi.events, pipeline.midi.pool;"
        "assert callable(pipeline.midi.__getattr__);"
        "print(sorted(m for m in ('music21', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- properties

raw_notes = note_strategies.raw_notes(3000, 1500, 30)


@settings(max_examples=300, deadline=None)
@given(raw_notes, st.sampled_from([1, 2, 4, 6]), st.sampled_from([0, 1, 5, 32, 127]), st.integers(1, 20))
def test_event_decode_of_encode_is_the_quantized_notes(notes, spq, bins, max_steps):
    q, _ = quantize(Piece(tuple(notes), 480), spq)
    codec = EventCodec(spq, max_steps, bins)
    assert codec.decode(codec.encode(q.notes)) == codec.canonical(q.notes)


@settings(max_examples=200, deadline=None)
@given(raw_notes, st.integers(1, 20))
def test_note_decode_of_encode_sounds_the_same_pitches_at_every_step(notes, max_steps):
    q, _ = quantize(Piece(tuple(notes), 480), 4)
    codec = NoteCodec(4, max_steps)

    def roll(ns):
        return {(t, n.pitch) for n in ns for t in range(n.start, n.end)}

    assert roll(codec.decode(codec.encode(q.notes))) == roll(q.notes)


def _shifts(steps: int, max_steps: int, word: str) -> list[str]:
    full, rest = divmod(steps, max_steps)
    return [f"{word}_{max_steps}"] * full + ([f"{word}_{rest}"] if rest else [])


@st.composite
def event_sequences(draw, max_steps: int, bins: int) -> list[str]:
    """A valid event sequence built from its grammar, not from the encoder: time steps of offs then ons."""
    tokens: list[str] = []
    active: set[int] = set()
    current_bin = 0
    for step in range(draw(st.integers(0, 8))):
        tokens += _shifts(draw(st.integers(0 if step == 0 else 1, 3 * max_steps)), max_steps, "shift")
        offs = sorted(draw(st.sets(st.sampled_from(sorted(active)))) if active else set())
        silent = [p for p in range(128) if p not in active or p in offs]
        ons = sorted(draw(st.sets(st.sampled_from(silent), min_size=0 if offs else 1, max_size=4)))
        for p in offs:
            tokens.append(f"off_{p}")
            active.discard(p)
        for p in ons:
            b = draw(st.integers(1, bins)) if bins else 0
            if b != current_bin:
                tokens.append(f"vel_{b}")
                current_bin = b
            tokens.append(f"on_{p}")
            active.add(p)
    if active:
        tokens += _shifts(draw(st.integers(1, 3 * max_steps)), max_steps, "shift")
        tokens += [f"off_{p}" for p in sorted(active)]
    return tokens


@st.composite
def note_sequences(draw, max_steps: int, chords: str) -> list[str]:
    """A valid note sequence from its grammar: sound tokens, and rest runs split largest-first, never trailing."""
    tokens: list[str] = []
    last_rest = True  # no rest run right after another
    for _ in range(draw(st.integers(0, 10))):
        if not last_rest and draw(st.booleans()):
            tokens += _shifts(draw(st.integers(1, 3 * max_steps)), max_steps, "r")
            last_rest = True
            continue
        pitches = sorted(draw(st.sets(st.integers(0, 127), min_size=1, max_size=4)))
        classes = sorted({p % 12 for p in pitches})
        if chords == "pitch_classes" and len(pitches) > 1:
            head = "c" + ".".join(map(str, classes)) if len(classes) > 1 else str(pitches[0])
        else:
            head = ".".join(map(str, pitches))
        tokens.append(f"{head}_{draw(st.integers(1, max_steps))}")
        last_rest = False
    if tokens and tokens[-1].startswith("r_"):
        while tokens and tokens[-1].startswith("r_"):
            tokens.pop()
    return tokens


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(1, 16), st.sampled_from([0, 1, 4, 127]))
def test_event_encode_of_decode_is_identity_on_valid_sequences(data, max_steps, bins):
    codec = EventCodec(4, max_steps, bins)
    tokens = data.draw(event_sequences(max_steps, bins))
    assert codec.encode(codec.decode(tokens)) == tokens


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(1, 16), st.sampled_from(["pitches", "pitch_classes"]))
def test_note_encode_of_decode_is_identity_on_valid_sequences(data, max_steps, chords):
    codec = NoteCodec(4, max_steps, chords)
    tokens = data.draw(note_sequences(max_steps, chords))
    assert codec.encode(codec.decode(tokens)) == tokens
