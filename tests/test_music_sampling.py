"""Sampling music: the note-length cap, the sounding-note ban, the length bound in quarter notes, the n-gram's
samples, and `seqlab sample --prime-midi`; on untrained models (what they sample is the worst case: noise)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import EncodeMidiConfig, EvaluateConfig, ModelConfig, SampleConfig
from pipeline.evaluation.evaluate import draw_and_judge, sample_sequences
from pipeline.evaluation.guide import MusicGuide
from pipeline.evaluation.judge import draw_ngram_and_judge, split_pieces
from pipeline.evaluation.ngram import KneserNeyLM
from pipeline.midi.codec import NoteCodec, make_codec
from pipeline.midi.corpus import vocab_meta
from pipeline.midi.events import Note
from pipeline.midi.io import read_midi
from pipeline.models import build_model
from pipeline.models.checkpoint import checkpoint_payload, save_checkpoint
from pipeline.vocab import EOS_ID, SPECIALS, Vocabulary
from tests.midi_helpers import melody, write_score

PITCHES = range(55, 80)


def music_vocab(encoding: str, normalize_key: bool = False) -> Vocabulary:
    """Every token of a small pitch range, as the encode stage would store it (meta included)."""
    cfg = EncodeMidiConfig(corpus="tunes", encoding=encoding, normalize_key=normalize_key)
    codec = make_codec(encoding)
    if encoding == "event":
        tokens = [f"{kind}_{p}" for p in PITCHES for kind in ("on", "off")] + [f"shift_{d}" for d in range(1, 17)]
    else:
        tokens = [f"{p}_{d}" for p in PITCHES for d in (1, 2, 4, 8, 16)] + [f"r_{d}" for d in (2, 4)]
        tokens += [f"{p}.{p + 4}.{p + 7}_{d}" for p in PITCHES[:12] for d in (2, 4, 16)]
    return Vocabulary.build(dict.fromkeys(tokens, 1), meta=vocab_meta(cfg, codec, "tunes"))


def untrained(vocab: Vocabulary, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    return build_model(ModelConfig(cell="gru", embedding_size=8, hidden_size=16), len(vocab)).eval()


def held_out(vocab: Vocabulary) -> dict[str, np.ndarray]:
    """Two little "real" pieces per split, encoded like the dataset."""
    codec = make_codec(vocab.meta["encoding"])
    pieces = {"val": [[60, 62, 64, 65], [67, 65, 64, 62]], "test": [[60, 64, 67, 72], [72, 67, 64, 60]]}
    out = {}
    for split, melodies in pieces.items():
        ids = []
        for pitches in melodies:
            ids += [vocab.id(t) for t in codec.encode([Note(4 * i, 4 * i + 4, p) for i, p in enumerate(pitches)])]
            ids.append(EOS_ID)
        out[split] = np.array(ids)
    return out


@pytest.mark.parametrize("encoding", ["event", "note"])
def test_samples_of_an_untrained_model_never_hold_a_note_past_the_cap(tmp_path, encoding):
    vocab = music_vocab(encoding)
    cfg = EvaluateConfig(device="cpu", samples=SampleConfig(n=6, max_length=300, temperature=1.0,
                                                            max_note_quarters=1.0))
    files, figures = draw_and_judge(untrained(vocab), vocab, cfg, tmp_path, held_out(vocab), device="cpu")
    music = figures["music"]
    assert music["closed_notes"] > 0 and music["max_note_quarters"] == 1.0 and music["pieces"] == 6
    assert {"pitch_class_histogram_distance", "note_length_histogram_distance", "ioi_histogram_distance",
            "polyphony", "in_key_share", "reference", "floor"} <= set(music)
    midis = sorted(p for p in files if p.suffix == ".mid")
    assert len(midis) == 6 and len([p for p in files if p.suffix == ".png"]) == 6
    written = [read_midi(p) for p in midis]
    assert sum(len(p.notes) for p in written) == music["notes"]
    assert all(n.end - n.start <= p.resolution for p in written for n in p.notes)  # at most one quarter note
    # without the cap the same draws hold notes longer: the cap is what closed them
    uncapped = EvaluateConfig(device="cpu", samples=SampleConfig(n=6, max_length=300, temperature=1.0,
                                                                 max_note_quarters=None))
    _, loose = draw_and_judge(untrained(vocab), vocab, uncapped, tmp_path / "loose", held_out(vocab), device="cpu")
    assert loose["music"]["closed_notes"] == 0 and loose["music"]["notes"] == music["notes"]


def _strikes_of_sounding_pitches(tokens: list[str], codec) -> int:
    """Note-ons of a pitch still sounding (event), or repeats of a slice that mean a re-attack (note)."""
    count, sounding, previous = 0, set(), None
    for tok in tokens:
        if tok in SPECIALS:  # decoding skips them
            continue
        if isinstance(codec, NoteCodec):
            pitches, steps = codec.pitches_of(tok)
            count += previous is not None and previous[0] == pitches and bool(pitches) and previous[1] < codec.max_steps
            previous = (pitches, steps)
            continue
        kind, _, value = tok.partition("_")
        if kind == "on":
            count += int(value) in sounding
            sounding.add(int(value))
        elif kind == "off":
            sounding.discard(int(value))
    return count


@pytest.mark.parametrize("encoding", ["event", "note"])
def test_the_sounding_note_ban_holds_for_the_rnn_and_the_ngram(encoding):
    vocab = music_vocab(encoding)
    codec = make_codec(encoding)
    loose = SampleConfig(n=6, max_length=200, temperature=1.0, max_note_quarters=None)
    strict = SampleConfig(n=6, max_length=200, temperature=1.0, max_note_quarters=None, forbid_sounding_note_on=True)
    model = untrained(vocab)

    def strikes(seqs):
        return sum(_strikes_of_sounding_pitches([vocab.tokens[i] for i in s], codec) for s in seqs)

    assert strikes(sample_sequences(model, vocab, loose, seed=3, device="cpu")) > 0
    assert strikes(sample_sequences(model, vocab, strict, seed=3, device="cpu")) == 0
    lm = KneserNeyLM(2, len(vocab)).fit(np.random.default_rng(0).integers(3, len(vocab), size=2000))
    assert strikes(lm.sample(6, 200, seed=3)) > 0
    guide = MusicGuide(vocab, 6, forbid_sounding_note_on=True)
    assert strikes(lm.sample(6, 200, seed=3, guide=guide)) == 0


def test_a_guide_bounds_the_generated_part_in_quarter_notes():
    vocab = music_vocab("note")
    from pipeline.models.sampling import sample

    guide = MusicGuide(vocab, 4, max_quarters=3)
    prime = [vocab.id("60_16")]  # a whole bar of prime does not count
    rows = sample(untrained(vocab), n=4, max_length=200, prime=prime, seed=1, guide=guide)
    codec = make_codec("note")
    for row in rows:
        steps = [codec.pitches_of(vocab.tokens[i])[1] for i in row]
        assert sum(steps[:-1]) < 12 <= sum(steps)  # no <eos> before 3 quarters, and stops at the token reaching them


def test_the_ngram_baseline_samples_music_and_judges_it(tmp_path):
    vocab = music_vocab("note")
    splits = held_out(vocab)
    splits["train"] = np.concatenate([splits["val"], splits["test"]] * 5)
    lm = KneserNeyLM(3, len(vocab)).fit(splits["train"])
    assert lm.distribution([5, 6]).sum() == pytest.approx(1.0)
    assert lm.distribution([5, 6])[7] == pytest.approx(lm.prob([5, 6], 7))
    cfg = EvaluateConfig(samples=SampleConfig(n=3, max_length=50, temperature=0.8, max_note_quarters=2.0))
    files, figures = draw_ngram_and_judge(lm, vocab, cfg, tmp_path, splits)
    sampled = [read_midi(f) for f in files if f.suffix == ".mid"]
    assert len(sampled) == 3
    # Trained on four one-line melodies of quarter notes: the samples hold their pitches, one quarter each.
    assert {n.pitch for p in sampled for n in p.notes} <= {60, 62, 64, 65, 67, 72}
    assert all(n.end - n.start == p.resolution for p in sampled for n in p.notes)
    music = figures["music"]
    assert music["pieces"] == 3 and music["notes"] == sum(len(p.notes) for p in sampled) > 3
    assert music["note_length_histogram_distance"] == music["ioi_histogram_distance"] == 0.0
    assert music["polyphony"] == 1.0 and music["closed_notes"] == 0
    # the pitch classes of val+test: nearer the test pieces than the val pieces are (the floor)
    assert 0 < music["pitch_class_histogram_distance"] < music["floor"]["pitch_class_histogram_distance"] < 1
    again, _ = draw_ngram_and_judge(lm, vocab, cfg, tmp_path / "again", splits)
    assert [f.read_bytes() for f in again if f.suffix == ".mid"] == [f.read_bytes() for f in files if f.suffix == ".mid"]
    assert len(split_pieces(splits["test"], vocab)) == 2


# --------------------------------------------------------------------------- seqlab sample --prime-midi


@pytest.fixture
def model_folder(tmp_path):
    vocab = music_vocab("event", normalize_key=True)
    folder = tmp_path / "models/tunes/gru"
    folder.mkdir(parents=True)
    save_checkpoint(folder / "model.pt", checkpoint_payload(untrained(vocab)))
    vocab.save(folder / "vocab.json")
    return folder


def test_sample_continues_a_midi_piece_in_its_own_key_for_so_many_quarters(model_folder, tmp_path, capsys):
    from stages import cli

    g_major = ["G4", "A4", "B4", "C5", "D5", "B4", "G4", "D5"]
    piece = write_score(tmp_path / "tune.mid", melody(g_major, 0.5))  # 4 quarter notes, moved to C by the dataset
    out = tmp_path / "cont.mid"
    argv = ["sample", "--model", str(model_folder), "--prime-midi", str(piece), "--quarters", "8", "--n", "2",
            "--seed", "1", "--temperature", "1.0", "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / f"cont_{i:02d}{ext}") for i in range(2) for ext in (".mid", ".png")]
    prime = read_midi(piece)
    for i in range(2):
        written = read_midi(tmp_path / f"cont_{i:02d}.mid")
        scale = written.resolution
        head = [n.pitch for n in written.notes if n.start < 4 * scale]
        assert head[: len(g_major)] == [n.pitch for n in prime.notes]  # the prime, back in G major
        assert max(n.end for n in written.notes) <= (4 + 8) * scale  # prime + 8 quarters at most
        assert all(n.end - n.start <= 4 * scale for n in written.notes)  # the default 4-quarter cap


def test_a_prime_with_unknown_tokens_is_reported_not_fatal(model_folder, tmp_path, capsys):
    from stages import cli

    piece = write_score(tmp_path / "low.mid", melody(["C2", "E2", "G4"], 1.0))  # C2, E2 lie outside the vocabulary
    out = tmp_path / "c.mid"
    assert cli.main(["sample", "--model", str(model_folder), "--prime-midi", str(piece), "--quarters", "2",
                     "--n", "1", "--seed", "2", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "sampled as <unk>" in err and "'on_" in err
    written = read_midi(out)
    assert {36, 40, 67} <= {n.pitch for n in written.notes}  # the file keeps the prime's unknown notes


@pytest.mark.parametrize("case", ["no notes", "missing file", "text model", "quarters for text"])
def test_a_prime_that_cannot_be_continued_is_one_line_and_exit_2(model_folder, tmp_path, capsys, case):
    from music21 import note, stream

    from stages import cli

    empty = tmp_path / "empty.mid"
    rests = stream.Stream([note.Rest(quarterLength=4)])
    rests.write("midi", fp=str(empty))
    model = model_folder
    argv = ["--prime-midi", str(empty), "--out", str(tmp_path / "o.mid")]
    if case == "missing file":
        argv[1] = str(tmp_path / "nope.mid")
    if case in ("text model", "quarters for text"):
        words = Vocabulary.build({f"w{i}": 1 for i in range(len(Vocabulary.load(model / "vocab.json")) - 3)},
                                 meta={"kind": "text", "level": "word", "dataset": "words"})
        words.save(tmp_path / "words.json")
        argv += ["--vocab", str(tmp_path / "words.json")]
        if case == "quarters for text":
            argv = ["--quarters", "4", "--vocab", str(tmp_path / "words.json")]
    assert cli.main(["sample", "--model", str(model), "--n", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqlab: error: ") and err.count("\n") == 1, err
    expected = {"no notes": "no notes", "missing file": "no such file", "text model": "text model",
                "quarters for text": "--quarters"}[case]
    assert expected in err
    assert not Path(tmp_path / "o.mid").exists()


# --------------------------------------------------------------------------- the stages, with MLflow

def music_params() -> str:
    """The repository's train and evaluate sections, with one tiny GRU and an n-gram on the dataset tunes-note."""
    import yaml

    from tests.conftest import REPO_ROOT

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    train, evaluate = params["train"], params["evaluate"]
    train["defaults"].update(device="cpu", threads=1, batch_size=2, bptt=16, epochs=1, eval_batch_size=2,
                             progress=False, sample={"n": 0})
    train["runs"] = {"tunes-note-gru": {"dataset": "tunes-note", "variant": "gru",
                                        "model": {"cell": "gru", "embedding_size": 8, "hidden_size": 16}}}
    evaluate.update(device="cpu", baselines={"tunes-note": {"order": 2}}, register_champion=False,
                    samples={"n": 2, "max_length": 80, "temperature": 1.0, "max_note_quarters": 2})
    return yaml.safe_dump({"train": train, "evaluate": evaluate})


def test_music_figures_reach_the_metrics_the_mlflow_runs_and_the_report(tmp_path, mlflow_uri, monkeypatch):
    from mlflow import MlflowClient

    from pipeline.files import read_json
    from stages import baseline as baseline_stage
    from stages import evaluate as evaluate_stage
    from stages import report as report_stage
    from stages import train as train_stage

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(music_params())
    data = tmp_path / "data/tokens/tunes-note"
    data.mkdir(parents=True)
    vocab = music_vocab("note")
    vocab.save(data / "vocab.json")
    splits = held_out(vocab)
    splits["train"] = np.concatenate([splits["val"], splits["test"]] * 4)
    for name, ids in splits.items():
        np.save(data / f"{name}.npy", ids.astype(np.uint16))
    common = ["--data", str(data)]
    assert train_stage.main(["--run", "tunes-note-gru", *common, "--out", "models/tunes-note/gru"]) == 0
    assert evaluate_stage.main(["--run", "tunes-note-gru", *common, "--model", "models/tunes-note/gru",
                                "--metrics", "metrics/tunes-note/gru.json", "--samples", "samples/tunes-note/gru"]) == 0
    assert baseline_stage.main(["--name", "tunes-note", *common, "--metrics", "metrics/tunes-note/ngram.json",
                                "--samples", "samples/tunes-note/ngram"]) == 0
    client = MlflowClient(mlflow_uri)  # this test's store, whatever mlflow last used
    for variant in ("gru", "ngram"):
        music = read_json(tmp_path / f"metrics/tunes-note/{variant}.json")["music"]
        assert music["max_note_quarters"] == 2.0 and music["pieces"] == 2
        assert len(list((tmp_path / f"samples/tunes-note/{variant}").glob("sample_*.mid"))) == 2
        run = client.search_runs([client.get_experiment_by_name("tunes-note").experiment_id],
                                 f"attributes.run_name = '{variant}'")[0]
        for key in ("pitch_class_histogram_distance", "in_key_share", "closed_notes", "max_note_quarters"):
            assert run.data.metrics[f"music_{key}"] == pytest.approx(music[key])
    assert report_stage.main([]) == 0
    summary = (tmp_path / "reports/summary.md").read_text()
    assert "## tunes-note" in summary and "test split" in summary and "val vs test" in summary
    assert (tmp_path / "reports/music.png").read_bytes()[:4] == b"\x89PNG"
