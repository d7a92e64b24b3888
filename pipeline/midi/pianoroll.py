"""Piano-roll pictures (matplotlib; the only plotting module of pipeline.midi): time on x, pitch on y, velocity as shade.

``render_piano_roll(tokens_or_midi_path, vocab_or_None, out_png)`` draws either a MIDI
file (pass ``None`` as vocabulary) or a token sequence decoded with a MIDI vocabulary
(strings or ids, decoding stops at the first ``<eos>``), for MLflow artifacts and the README.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from pipeline.files import atomic_path
from pipeline.midi.events import Note, Piece
from pipeline.vocab import Vocabulary

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
HEIGHT_IN = 4.5
# Fixed margins in inches (left: the "pitch" label and tick labels up to "C-1"; top: the title; right: half
# of an x tick label such as "2.00" at the edge).  A layout engine (constrained or tight) finds about the same
# margins but measures every text twice per figure, which doubles the cost of a roll (samples are drawn at
# every validation of a music model).
MARGINS_IN = {"left": 0.62, "right": 0.2, "bottom": 0.48, "top": 0.26}
# zlib level 1: 2-3x faster to encode than matplotlib's default 6; piano rolls are flat colours either way
PNG_OPTIONS = {"compress_level": 1}


def _piece(source: str | Path | Sequence[str] | Sequence[int], vocab: Vocabulary | None) -> Piece:
    if isinstance(source, (str, Path)) and vocab is None:
        from pipeline.midi.io import read_midi

        return read_midi(source)
    if vocab is None:
        raise ValueError("render_piano_roll: tokens need the vocabulary they came from (vocab.json)")
    from pipeline.midi.codec import codec_from_meta

    codec = codec_from_meta(vocab.meta)
    strings = [t if isinstance(t, str) else vocab.tokens[int(t)] for t in source]
    return Piece(tuple(codec.decode(strings)), codec.steps_per_quarter)


def _draw(fig: Figure, notes: Sequence[Note], resolution: int, title: str) -> None:
    ax = fig.add_subplot(1, 1, 1)
    # one rectangle per note: (start, pitch - 0.4) .. (end, pitch + 0.4), in quarter notes
    boxes = [
        [(n.start / resolution, n.pitch - 0.4), (n.end / resolution, n.pitch - 0.4),
         (n.end / resolution, n.pitch + 0.4), (n.start / resolution, n.pitch + 0.4)]
        for n in notes
    ]
    shades = [0.35 + 0.65 * min(max(n.velocity, 0), 127) / 127 for n in notes]  # soft notes stay visible
    coll = PolyCollection(boxes, array=shades, cmap="Greys", clim=(0.0, 1.0), linewidths=0)
    ax.add_collection(coll)
    if notes:
        low, high = min(n.pitch for n in notes), max(n.pitch for n in notes)
        ax.set_xlim(0, max(n.end for n in notes) / resolution)
        ax.set_ylim(low - 2, high + 2)
        cs = [p for p in range(low - 2, high + 3) if p % 12 == 0]
        ax.set_yticks(cs, [f"C{p // 12 - 1}" for p in cs])
    else:
        ax.text(0.5, 0.5, "no notes", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("time (quarter notes)")
    ax.set_ylabel("pitch")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title)


def piano_roll_plot(piece: Piece, title: str) -> Figure:
    """The piano roll of ``piece`` on a bare Figure, 100 dpi, wider for longer pieces (up to 20 inches)."""
    width = min(20.0, 4.0 + piece.quarters / 8)
    fig = Figure(figsize=(width, HEIGHT_IN), dpi=100)
    m = MARGINS_IN
    fig.subplots_adjust(left=m["left"] / width, right=1 - m["right"] / width, bottom=m["bottom"] / HEIGHT_IN,
                        top=1 - m["top"] / HEIGHT_IN)
    _draw(fig, piece.notes, piece.resolution, f"{title} ({len(piece.notes)} notes)")
    return fig


def render_piano_roll(
    tokens_or_midi_path: str | Path | Sequence[str] | Sequence[int],
    vocab_or_none: Vocabulary | None,
    out_png: str | Path,
    title: str | None = None,
) -> Path:
    """Write a piano-roll PNG of a MIDI file or of tokens decoded with ``vocab_or_none``; return its path."""
    piece = _piece(tokens_or_midi_path, vocab_or_none)
    if title is None:
        title = Path(tokens_or_midi_path).name if isinstance(tokens_or_midi_path, (str, Path)) else "sampled tokens"
    fig = piano_roll_plot(piece, title)
    out_png = Path(out_png)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", pil_kwargs=PNG_OPTIONS)
    return out_png
