"""The curriculum's data and measurements: agreement sequences, space tags, language lines, style merging,
the gradient probe and the figures, on tiny inputs built here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config import LangIdConfig, ModelConfig
from pipeline.curriculum import agreement, langid, metrics, probe, styles, tagging
from pipeline.curriculum.batches import RandomBatches, pad_rows
from pipeline.errors import UserError
from pipeline.figures import perplexity
from pipeline.models import build_model
from pipeline.vocab import EOS_ID, PAD_ID, Vocabulary

CHORD_META = {"kind": "midi", "encoding": "note", "chords": "pitch_classes", "steps_per_quarter": 4, "max_steps": 16,
              "voices": "all", "keep_drums": False, "qpm": 120}


def test_agreement_label_is_the_subjects_number_however_far_back():
    rng = np.random.default_rng(0)
    rows, labels = agreement.make_examples(np.array([1, 5, 40] * 50), 0.5, rng)
    singular = {agreement.ID[w] for w in agreement.SINGULAR}
    plural = {agreement.ID[w] for w in agreement.PLURAL}
    assert [len(r) for r in rows[:3]] == [3, 7, 42]  # "the", the subject, then d fillers
    for row, label in zip(rows, labels, strict=True):
        assert row[0] == agreement.ID["the"] and int(row[1] in plural) == label and row[1] in singular | plural
    tails = np.concatenate([r[2:] for r in rows])
    attractors = np.isin(tails, list(singular | plural)).mean()
    assert 0.4 < attractors < 0.6  # attractor_rate 0.5, of both numbers
    assert {0, 1} == set(labels.tolist())
    assert agreement.render(np.array([agreement.ID[w] for w in ("the", "cats", "old", "dog")]), 1) == \
        "the cats old dog -> were"


def _examples_drawn_with_choice(distances, attractor_rate, rng):
    """The agreement examples as first written, with ``rng.choice``: make_examples must draw exactly these."""
    nouns = np.array([[agreement.ID[w] for w in agreement.SINGULAR], [agreement.ID[w] for w in agreement.PLURAL]])
    fillers = np.array([agreement.ID[w] for w in agreement.FILLERS])
    labels = rng.integers(0, 2, size=len(distances))
    rows = []
    for label, distance in zip(labels, distances, strict=True):
        tail = rng.choice(fillers, size=int(distance))
        attract = rng.random(int(distance)) < attractor_rate
        tail[attract] = nouns[rng.integers(0, 2, attract.sum()), rng.integers(0, nouns.shape[1], attract.sum())]
        rows.append(np.concatenate([[agreement.ID["the"], rng.choice(nouns[label])], tail]))
    return rows, labels


@pytest.mark.parametrize("seed", [0, 1337, [1337, 80, 0]])
def test_agreement_examples_are_the_ones_rng_choice_draws(seed):
    """Same rows, labels, dtype and generator state afterwards: the curriculum's figures do not move."""
    ours, theirs = np.random.default_rng(seed), np.random.default_rng(seed)
    for distances, rate in ((np.array([1, 5, 40, 80, 2]), 0.25), (np.full(7, 20), 0.0), (np.array([3] * 4), 1.0)):
        rows, labels = agreement.make_examples(distances, rate, ours)
        want_rows, want_labels = _examples_drawn_with_choice(distances, rate, theirs)
        assert np.array_equal(labels, want_labels)
        assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(rows, want_rows, strict=True))
    assert ours.bit_generator.state == theirs.bit_generator.state


def test_removing_spaces_tags_word_starts_and_restores_the_text():
    text = "the cat sat\non the mat"
    vocab = Vocabulary.build({c: 1 for c in text if c != "\n"})
    ids = np.concatenate([np.append(vocab.encode(line), EOS_ID) for line in text.split("\n")])
    chars, tags = tagging.remove_spaces(ids, vocab)
    assert "".join(vocab.decode(chars)) == "thecatsatonthemat"
    assert "".join(map(str, tags)) == "10010010010100100"
    assert tagging.restore(chars, tags, vocab) == "the cat sat on the mat"
    x, y = tagging.windows(chars, tags, 5)
    assert x.shape == y.shape == (3, 5) and y[0].tolist() == [1, 0, 0, 1, 0]
    with pytest.raises(UserError, match="has no ' ' \\(space\\)"):
        tagging.remove_spaces(ids, Vocabulary.build({"a": 1}))


def test_random_windows_are_seeded_and_aligned():
    chars, tags = np.arange(100, dtype=np.int64), np.arange(100, dtype=np.int64) % 2
    a = tagging.random_windows(chars, tags, 8, 4, seed=3)(1)
    b = tagging.random_windows(chars, tags, 8, 4, seed=3)(1)
    assert torch.equal(a[0], b[0]) and a[0].shape == (4, 8)
    assert torch.equal(a[0] % 2, a[1])  # each tag sits under its own character


def test_language_lines_are_balanced_disjoint_and_checked(tmp_path):
    for lang, word in (("aa", "alpha"), ("bb", "beta")):
        lines = [f"{word} {i} " * 3 for i in range(40)] + ["short", f"{word} 0 " * 3]  # a repeat and a short line
        (tmp_path / f"{lang}.txt").write_text("\n".join(lines), encoding="utf-8")
    cfg = LangIdConfig(languages=("aa", "bb"), min_chars=10, max_chars=12, lines={"train": 20, "val": 5, "test": 5})
    split = langid.split_languages(cfg, tmp_path)
    assert [len(split[s]) for s in ("train", "val", "test")] == [40, 10, 10]
    assert all(len(line) <= 12 for pairs in split.values() for line, _ in pairs)
    for label in (0, 1):
        seen = [line for pairs in split.values() for line, lab in pairs if lab == label]
        assert len(seen) == len(set(seen)) == 30
    greedy = LangIdConfig(languages=("aa", "bb"), min_chars=10, lines={"train": 40, "val": 5, "test": 5})
    with pytest.raises(UserError, match="aa.txt has 40 usable lines, fewer than the 50 asked for"):
        langid.split_languages(greedy, tmp_path)


def test_styles_merge_one_vocabulary_and_keep_every_token():
    chorales = Vocabulary(["<pad>", "<unk>", "<eos>", "c0.4.7_4", "60_2"], {**CHORD_META, "dataset": "a"})
    folk = Vocabulary(["<pad>", "<unk>", "<eos>", "62_1", "60_2"], {**CHORD_META, "dataset": "b", "transpose": [1]})
    merged = styles.merge_vocabularies(["a", "b"], [chorales, folk])
    assert merged.tokens == ("<pad>", "<unk>", "<eos>", "c0.4.7_4", "60_2", "62_1")
    assert styles.remap(np.array([3, 4, 2]), folk, merged).tolist() == [5, 4, 2]
    with pytest.raises(UserError, match="differ in 'steps_per_quarter' \\(4 vs 12\\)"):
        styles.merge_vocabularies(["a", "b"], [chorales, Vocabulary(folk.tokens, {**CHORD_META, "steps_per_quarter": 12})])
    assert styles.polyphony([[3, 3], [4, 5]], merged) == pytest.approx((3.0 + 1.0) / 2)


def test_style_rows_cover_every_piece_with_one_token_of_overlap():
    ids = np.array([5, 6, 7, 8, 9, EOS_ID, 3, 4, EOS_ID])
    rows = styles.chunk_rows(ids, 3)
    assert [r.tolist() for r in rows] == [[2, 5, 6, 7], [7, 8, 9, 2], [2, 3, 4, 2]]
    inputs, targets, style = styles.style_dataset([rows[:2], rows[2:]])
    assert style.tolist() == [0, 0, 1]
    assert torch.equal(inputs[:, 1:], targets[:, :-1])  # targets are the inputs shifted by one
    short = pad_rows([np.array([1, 2])])[0]
    assert short.tolist() == [[1, 2]]
    assert (targets != PAD_ID).sum() == 9  # every token of both pieces (the <eos>s included) is predicted once


def test_random_batches_trim_padding_to_the_longest_row_drawn():
    ids, lengths = pad_rows([np.array([1, 2]), np.array([1, 2, 3, 4, 5])])
    draw = RandomBatches([ids, lengths], 6, seed=0, lengths=1)
    for step in range(5):
        batch_ids, batch_lengths = draw(step)
        assert batch_ids.shape[1] == int(batch_lengths.max())


def _rnn(recurrent_scale: float):
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell="rnn", embedding_size=4, hidden_size=8), 10)
    with torch.no_grad():
        model.rnn.weight_hh_l0.mul_(recurrent_scale)
    return model


def test_the_gradient_reaches_back_only_through_the_recurrence():
    windows = probe.probe_windows(np.arange(3, 10).repeat(20), window=12, count=5, seed=0)
    assert windows.shape == (5, 13)
    cut = probe.gradient_by_distance(_rnn(0.0), windows)  # Waa = 0: only the last input matters
    assert cut.shape == (12,) and cut[0] > 0 and np.all(cut[1:] == 0)
    weak, strong = probe.gradient_by_distance(_rnn(0.3), windows), probe.gradient_by_distance(_rnn(3.0), windows)
    assert np.all(np.diff(weak) < 0)  # a contracting recurrence: the gradient vanishes step by step
    assert weak[-1] / weak[0] < strong[-1] / strong[0]


def test_clipping_series_reads_both_runs(tmp_path):
    header = "step,epoch,train_loss,grad_norm_mean,grad_norm_max,grad_norm_clipped_mean,clip_rate\n"
    (tmp_path / "rnn").mkdir()
    (tmp_path / "rnn" / "grad_norms.csv").write_text(header + "25,0.5,3.0,2.0,5.0,1.0,0.5\n30,0.6,3.0,2.0,5.0,1.0,0.0\n")
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "grad_norms.csv").write_text(header + "25,0.5,3.0,4.0,9.0,4.0,0.0\n")
    rows = probe.clipping_series(tmp_path, "rnn", "raw")
    assert {(r["run"], r["series"], r["grad_norm"]) for r in rows if r["step"] == 25} == {
        ("rnn", "before clipping", 2.0), ("rnn", "max before clipping", 5.0), ("rnn", "after clipping", 1.0),
        ("raw", "before clipping", 4.0), ("raw", "max before clipping", 9.0)}
    assert probe.clipping_metrics(rows)["rnn after clipping"]["clip_rate"] == pytest.approx(12.5 / 30)  # step-weighted
    with pytest.raises(probe.ProbeInputError, match="missing/grad_norms.csv: gradient-norm series not found"):
        probe.clipping_series(tmp_path, "rnn", "missing")


def test_binary_scores_and_confusion():
    scores = metrics.binary_scores(np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1]))
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3) and scores["accuracy"] == pytest.approx(3 / 5)
    assert metrics.confusion(np.array([0, 1, 1]), np.array([0, 0, 1]), 2).tolist() == [[1, 1], [0, 1]]
    assert perplexity(np.log(2) * 4 / 4) == pytest.approx(2.0)  # a fair coin between two labels


def test_piano_roll_panels_draw_every_note_as_broken_barh_would(tmp_path):
    """One collection per panel draws the very pixels of one ``broken_barh`` per note (the same rectangles, in
    the same order), so the styles picture is unchanged."""
    from matplotlib import image

    from pipeline.curriculum import plots

    rolls = {"a": [(0, 4, 60), (4, 6, 64), (4, 10, 67), (6, 8, 60)], "b": [(0, 2, 50), (1, 3, 50), (3, 9, 70)],
             "empty": []}

    def per_note(rolls, path, title):  # the panels as first drawn: one broken_barh per note
        fig, axes = plots._subplots(len(rolls), 1, figsize=(10, 2.4 * len(rolls)), squeeze=False)
        for ax, (name, notes) in zip(axes[:, 0], rolls.items(), strict=True):
            for start, end, pitch in notes:
                ax.broken_barh([(start, end - start)], (pitch - 0.4, 0.8), color="C0")
            ax.set(ylabel="MIDI pitch", title=f"{title}: {name}")
            ax.grid(alpha=0.3)
            if notes:
                ax.set_ylim(min(n[2] for n in notes) - 2, max(n[2] for n in notes) + 2)
                ax.set_xlim(0, max(n[1] for n in notes))
        axes[-1, 0].set_xlabel("time (grid steps, 4 per quarter note)")
        return plots._save(fig, path)

    ours = image.imread(plots.plot_piano_rolls(rolls, tmp_path / "ours.png", "t"))
    reference = image.imread(per_note(rolls, tmp_path / "reference.png", "t"))
    assert ours.shape == reference.shape and (ours == reference).all()
