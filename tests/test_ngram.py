"""The interpolated Kneser-Ney baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.evaluation.ngram import KneserNeyLM
from pipeline.vocab import EOS_ID, PAD_ID
from tests.ngram_reference import KneserNeyLM as ReferenceLM


def _stream(seed: int = 0, n: int = 3000, vocab: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # A Markov-ish source: mostly "next id", sometimes random, with <eos> records.
    ids, cur = [], 3
    for _ in range(n):
        cur = cur + 1 if cur + 1 < vocab and rng.random() < 0.8 else int(rng.integers(3, vocab))
        ids.append(cur)
        if rng.random() < 0.1:
            ids.append(EOS_ID)
    return np.array(ids)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_distribution_sums_to_one_and_never_predicts_pad(order):
    vocab = 12
    lm = KneserNeyLM(order, vocab).fit(_stream())
    rng = np.random.default_rng(1)
    contexts = [[], [EOS_ID], [3, 4], list(rng.integers(1, vocab, size=6)), [11, 11, 11, 11]]
    for ctx in contexts:
        probs = [lm.prob(ctx, w) for w in range(vocab)]
        assert probs[PAD_ID] == 0.0
        assert math.isclose(sum(probs), 1.0, rel_tol=1e-9), (ctx, sum(probs))
        assert all(p > 0 for p in probs[1:])  # smoothing: unseen words keep some mass


def test_higher_order_beats_unigram_on_structured_text():
    train, test = _stream(0), _stream(1, n=800)
    ppl = {order: KneserNeyLM(order, 12).fit(train).perplexity(test) for order in (1, 2, 3)}
    assert ppl[2] < 0.6 * ppl[1]
    assert ppl[3] <= ppl[2] * 1.05
    assert ppl[1] < 12  # better than uniform over the support


def test_unseen_tokens_still_get_probability_and_counts_scored_tokens():
    lm = KneserNeyLM(3, 20).fit(np.array([3, 4, 5, EOS_ID] * 10))
    nll, n = lm.nll(np.array([3, 19, EOS_ID]))
    assert n == 3 and math.isfinite(nll)


def test_bigram_matches_hand_computation():
    # stream (padded with one <eos>): eos a b eos a c eos  with a=3, b=4, c=5, V=6 (support 5)
    lm = KneserNeyLM(2, 6).fit(np.array([3, 4, EOS_ID, 3, 5, EOS_ID]))
    d2 = lm.discounts[2]  # bigram counts: (e,a)=2, (a,b)=1, (b,e)=1, (a,c)=1, (c,e)=1 -> n1=4, n2=1
    assert d2 == pytest.approx(4 / 6)
    # continuation unigrams: a<-{e}, b<-{a}, c<-{a}, e<-{b,c}: N=5 -> n1=3, n2=1, D1=3/5
    d1 = lm.discounts[1]
    assert d1 == pytest.approx(3 / 5)
    p1_b = (1 - d1) / 5 + d1 * 4 / 5 * (1 / 5)
    expected = (1 - d2) / 2 + d2 * 2 / 2 * p1_b  # context a: total 2, followers {b, c}
    assert lm.prob([3], 4) == pytest.approx(expected)


def test_order_must_be_positive():
    with pytest.raises(ValueError):
        KneserNeyLM(0, 10)


def test_trigram_matches_hand_computation_with_continuation_counts_below_the_top():
    # ids a b c a b c a b e (a=3, b=4, c=5, e=<eos>, V=6: support 5), padded with two <eos>: e e a b c a b c a b e
    lm = KneserNeyLM(3, 6).fit(np.array([3, 4, 5, 3, 4, 5, 3, 4, EOS_ID]))
    # trigrams (raw counts): eea 1, eab 1, abc 2, bca 2, cab 2, abe 1 -> n1=3, n2=3: D3 = 3/9
    # bigrams (continuation: the distinct trigrams' suffixes): ea 1, ab 2 (eab, cab), bc 1, ca 1, be 1
    #   -> n1=4, n2=1: D2 = 4/6; raw counts would give ab 3, bc 2, ca 2 and other totals.
    # unigrams (suffixes of the distinct bigrams): a 2 (ea, ca), b 1, c 1, e 1 -> n1=3, n2=1: D1 = 3/5; total 5
    d3, d2, d1 = 3 / 9, 4 / 6, 3 / 5
    assert lm.discounts[1:] == [pytest.approx(d1), pytest.approx(d2), pytest.approx(d3)]

    def p1(count):  # context (): total 5, four distinct followers
        return (count - d1) / 5 + d1 * 4 / 5 * (1 / 5)

    p2_c_after_b = (1 - d2) / 2 + d2 * 2 / 2 * p1(1)  # context b: bc 1, be 1 -> total 2, 2 followers
    p3_c_after_ab = (2 - d3) / 3 + d3 * 2 / 3 * p2_c_after_b  # context ab: abc 2, abe 1 -> total 3, 2 followers
    assert lm.prob([3, 4], 5) == pytest.approx(p3_c_after_ab, rel=1e-12)
    p2_b_after_a = (2 - d2) / 2 + d2 * 1 / 2 * p1(1)  # context a: ab 2 -> total 2 (raw: 3), 1 follower
    p3_b_after_ca = (2 - d3) / 2 + d3 * 1 / 2 * p2_b_after_a  # context ca: cab 2
    assert lm.prob([5, 3], 4) == pytest.approx(p3_b_after_ca, rel=1e-12)
    p2_a_after_b = 0 + d2 * 2 / 2 * p1(2)  # context bb unseen at order 3: all its mass from order 2
    assert lm.prob([4, 4], 3) == pytest.approx(p2_a_after_b, rel=1e-12)
    assert lm.num_ngrams(3) == 6 and lm.num_ngrams(2) == 5 and lm.num_ngrams(1) == 4


def test_ids_outside_the_vocabulary_are_refused():
    with pytest.raises(ValueError, match="token id 9 is outside"):
        KneserNeyLM(2, 6).fit(np.array([3, 4, 9]))
    lm = KneserNeyLM(2, 6).fit(np.array([3, 4, 5]))
    with pytest.raises(ValueError, match="outside"):
        lm.nll(np.array([3, 6]))


# ---- the same figures as the tuple-and-Counter model it replaced (tests/ngram_reference.py)

def _text_like(vocab: int, n: int, seed: int, word_length: int) -> np.ndarray:
    """Ids shaped like text: "words" of 1..word_length ids from a fixed Zipfian lexicon (the same for every
    seed), a separator id after each, records closed by <eos> now and then."""
    lexicon_rng, rng = np.random.default_rng(1234), np.random.default_rng(seed)
    lexicon = [lexicon_rng.integers(4, vocab, size=lexicon_rng.integers(1, word_length + 1)) for _ in range(400)]
    weights = 1.0 / np.arange(1, len(lexicon) + 1)
    ids: list[int] = []
    for word in rng.choice(len(lexicon), size=n, p=weights / weights.sum()):
        ids += [*lexicon[word].tolist(), 3]
        if rng.random() < 0.06:
            ids.append(EOS_ID)
        if len(ids) >= n:
            break
    return np.array(ids[:n])


STREAMS = {"char-like": (60, 7), "word-like": (2000, 2)}  # vocabulary, word length


def _assert_same_as_reference(order: int, vocab: int, train, test, contexts) -> KneserNeyLM:
    lm, ref = KneserNeyLM(order, vocab).fit(train), ReferenceLM(order, vocab).fit(train)
    np.testing.assert_allclose(lm.token_log_probs(test), ref.token_log_probs(test), rtol=1e-9, atol=0)
    assert lm.nll(test) == ref.nll(test)  # summed in the same order: the same float, to the bit
    assert lm.discounts == ref.discounts
    assert [lm.num_ngrams(k) for k in range(1, order + 1)] == [len(ref.counts[k]) for k in range(1, order + 1)]
    for context in contexts:
        np.testing.assert_allclose(lm.distribution(context), ref.distribution(context), rtol=1e-9, atol=0)
    return lm


@pytest.mark.parametrize("order", [1, 2, 3, 5, 6])
@pytest.mark.parametrize("stream", sorted(STREAMS))
def test_same_figures_as_the_reference_model(stream, order):
    vocab, word_length = STREAMS[stream]
    train, test = _text_like(vocab, 20_000, 0, word_length), _text_like(vocab, 3_000, 1, word_length)
    unseen = list(np.random.default_rng(5).integers(3, vocab, size=order + 2))
    lm = _assert_same_as_reference(order, vocab, train, test, [[], [EOS_ID], test[:7].tolist(), test[100:104].tolist(),
                                                               train[-order:].tolist(), unseen])
    assert lm.codecs[order].narrow == (vocab**order <= 2**64)  # 2000 ids at order 6: the wide packing


def test_same_figures_as_the_reference_model_for_a_vocabulary_too_large_for_one_integer():
    # 10,000 ids at order 5: 1e20 codes > 2**64, so orders 5 (wide rows) and 1..4 (uint64) are packed differently.
    train, test = _text_like(10_000, 20_000, 0, 2), _text_like(10_000, 2_000, 1, 2)
    lm = _assert_same_as_reference(5, 10_000, train, test, [[], test[:9].tolist()])
    assert not lm.codecs[5].narrow and lm.codecs[4].narrow


def test_chunked_counting_and_scoring_give_the_same_model(monkeypatch):
    """Chunks of a few positions (every chunk boundary inside some n-gram, counts merged across chunks) give
    what one chunk gives."""
    from pipeline.evaluation import ngram, ngram_counts

    train, test = _text_like(60, 5_000, 0, 7), _text_like(60, 1_000, 1, 7)
    whole = KneserNeyLM(5, 60).fit(train)
    monkeypatch.setattr(ngram_counts, "CHUNK", 37)
    monkeypatch.setattr(ngram, "SCORE_CHUNK", 11)
    chunked = KneserNeyLM(5, 60).fit(train)
    for k in range(1, 6):
        for name in ("grams", "counts", "contexts", "totals", "followers"):
            np.testing.assert_array_equal(getattr(chunked.tables[k], name), getattr(whole.tables[k], name))
    assert chunked.nll(test) == whole.nll(test)
    np.testing.assert_array_equal(chunked.token_log_probs(test), whole.token_log_probs(test))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
def test_a_memory_mapped_token_file_in_its_stored_dtype_gives_the_same_figures(tmp_path, dtype):
    from pipeline import files

    train, test = _text_like(60, 5_000, 0, 7), _text_like(60, 1_000, 1, 7)
    np.save(tmp_path / "train.npy", train.astype(dtype))
    np.save(tmp_path / "test.npy", test.astype(dtype))
    mapped_train, mapped_test = files.read_tokens(tmp_path / "train.npy"), files.read_tokens(tmp_path / "test.npy")
    lm, ref = KneserNeyLM(4, 60).fit(mapped_train), ReferenceLM(4, 60).fit(train.tolist())
    assert lm.nll(mapped_test) == ref.nll(test.tolist())
    assert not mapped_train.flags.writeable  # read, never copied into a writable int64 array


@pytest.mark.parametrize("max_train_tokens", [None, 2_500])
def test_the_baseline_stage_writes_the_reference_models_figures(tmp_path, monkeypatch, max_train_tokens):
    """metrics/<dataset>/ngram.json as the tuple-and-Counter model gave it: the same keys, ``ngrams`` the distinct
    top-order n-grams, every figure to the digit; with ``max_train_tokens``, fitted on that many tokens, recorded."""
    from pipeline.figures import reported_figures, summarize
    from pipeline.files import read_json, write_tokens
    from pipeline.vocab import SPECIALS, Vocabulary
    from stages import baseline as baseline_stage

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    Vocabulary([*SPECIALS, *(f"c{i}" for i in range(57))], {"level": "char"}).save("data/vocab.json")
    splits = {"train": _text_like(60, 6_000, 0, 7), "val": _text_like(60, 800, 1, 7), "test": _text_like(60, 900, 2, 7)}
    for name, ids in splits.items():
        write_tokens(f"data/{name}.npy", ids, 60)  # the smallest dtype, read back memory-mapped by the stage
    cap = "" if max_train_tokens is None else f", max_train_tokens: {max_train_tokens}"
    (tmp_path / "params.yaml").write_text(f"evaluate: {{device: cpu, baselines: {{toy: {{order: 4{cap}}}}}}}\n")
    assert baseline_stage.main(["--name", "toy", "--data", "data", "--metrics", "metrics/toy/ngram.json"]) == 0
    written = read_json("metrics/toy/ngram.json")
    ref = ReferenceLM(4, 60).fit(splits["train"][:max_train_tokens].tolist())
    expected = {"order": 4, "ngrams": len(ref.counts[4])}
    for split in ("val", "test"):
        nll, n = ref.nll(splits[split].tolist())
        expected[split] = reported_figures(summarize([nll], [n], ("forward",)), True)
    if max_train_tokens is not None:
        expected["train_tokens"] = max_train_tokens
    assert written.pop("fit_seconds") >= 0
    assert written == expected


def test_the_baseline_stage_refuses_ids_outside_the_vocabulary_in_one_line(tmp_path, monkeypatch, capsys):
    """A token file that disagrees with its vocab.json (hand-edited, or from another tokenize run): exit 2, one
    line saying what to do, no metrics file."""
    from pipeline.files import write_tokens
    from pipeline.vocab import SPECIALS, Vocabulary
    from stages import baseline as baseline_stage

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    Vocabulary([*SPECIALS, *(f"c{i}" for i in range(7))], {"level": "char"}).save("data/vocab.json")
    for name in ("train", "val", "test"):
        write_tokens(f"data/{name}.npy", np.array([3, 4, 2, 65 if name == "train" else 5, 2]), 70)
    (tmp_path / "params.yaml").write_text("evaluate: {device: cpu, baselines: {toy: {order: 3}}}\n")
    assert baseline_stage.main(["--name", "toy", "--data", "data", "--metrics", "metrics/toy/ngram.json"]) == 2
    err = capsys.readouterr().err
    assert "data/train.npy: token id 65 at position 3 is outside the vocabulary (ids 0..9)" in err and "dvc repro" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "metrics/toy/ngram.json").exists()
