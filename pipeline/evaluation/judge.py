"""Judging samples: write them, and for music compare them with the held-out pieces (no torch: the n-gram
baseline uses it too).

:func:`render_and_judge` writes what a person reads or hears (text, or MIDI plus piano rolls, see
:mod:`pipeline.evaluation.render`) and, for a MIDI vocabulary, compares the decoded samples with the held-out
splits decoded by the same codec (:func:`pipeline.evaluation.music.judge`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.config import EvaluateConfig, SampleConfig
from pipeline.evaluation.guide import guide_for
from pipeline.evaluation.music import judge
from pipeline.evaluation.ngram import KneserNeyLM
from pipeline.evaluation.render import is_music, render_text, write_music
from pipeline.midi.events import Piece
from pipeline.vocab import EOS_ID, Vocabulary


def split_pieces(ids: np.ndarray, vocab: Vocabulary) -> list[Piece]:
    """A split's pieces (records closed by ``<eos>``), decoded as they are: no note-length cap."""
    from pipeline.midi.codec import decode_ids

    ids = np.asarray(ids, dtype=np.int64)
    records = np.split(ids, np.flatnonzero(ids == EOS_ID) + 1)
    pieces = []
    for record in records:
        decoded = decode_ids(record.tolist(), vocab)  # decoding stops at the closing <eos>
        if decoded.notes:
            pieces.append(Piece(tuple(decoded.notes), decoded.steps_per_quarter))
    return pieces


def render_and_judge(vocab: Vocabulary, sequences: list[list[int]], cfg: SampleConfig, folder: Path,
                     splits: dict[str, np.ndarray]) -> tuple[list[Path], dict]:
    """Write the samples into ``folder``; return the files and ``{"music": figures}`` (``{}`` for text)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not sequences:
        return [], {}
    if not is_music(vocab):
        return render_text(vocab, sequences, folder), {}
    written = write_music(vocab, sequences, folder, max_note_quarters=cfg.max_note_quarters)
    samples = [Piece(tuple(d.notes), d.steps_per_quarter) for d in written.decoded]
    real = {name: split_pieces(ids, vocab) for name, ids in splits.items() if name in ("val", "test") and ids.size}
    closed = sum(d.closed for d in written.decoded)
    return written.files, {"music": judge(samples, closed, cfg.max_note_quarters, real)}


def draw_ngram_and_judge(lm: KneserNeyLM, vocab: Vocabulary, cfg: EvaluateConfig, folder: Path,
                         splits: dict[str, np.ndarray]) -> tuple[list[Path], dict]:
    """The n-gram baseline's samples, drawn with the RNNs' settings (``evaluate.samples``, ``evaluate.seed``)."""
    s = cfg.samples
    sequences = []
    if s.n >= 1:
        guide = guide_for(vocab, s.n, s.forbid_sounding_note_on, s.max_note_quarters)
        sequences = lm.sample(s.n, s.max_length, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                              seed=cfg.seed, guide=guide)
    return render_and_judge(vocab, sequences, s, folder, splits)

