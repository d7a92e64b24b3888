"""Hyper-parameter sweep behind bench/quality/params.yaml: replays this CPU's time budgets as token budgets.

How good a recipe gets depends on the updates it makes, not on the machine that makes them; so a config is
judged by training, on any torch device, exactly the tokens this 2-core CPU trains in the budget (its measured
tokens/s x 0.9 x seconds, the ``tokens`` field of each config), with the recipe the pipeline uses: LSTM, embedding
and inter-layer/output dropout, adaptive or (tied) full softmax, Adam, linear warm-up then cosine to 0 over the
run, gradient norm clipped at 1, bf16 autocast; validation = whole stream, state carried (10 streams).  It
is a stand-alone trainer (many configs side by side on one GPU); the results quoted as *the* benchmark come
from the pipeline's own stages (bench/quality.py).  Results of the sweeps behind BENCHMARKS.md: sweep-results.json.

    SEQLAB_DATA=../shared/data python bench/quality_sweep.py bench/quality/sweep2.json /tmp/sweep
"""

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

D = os.environ.get("SEQLAB_DATA", "../shared/data")
FILES = {"ptb": "wojzaremba_lstm/ptb.{}.txt", "shakes": "karpathy_char-rnn/tinyshakespeare/input.txt"}


def load(corpus):
    if corpus == "ptb":

        def words(f):
            return [w for line in Path(D, FILES["ptb"].format(f)).read_text().splitlines() for w in line.split() + ["<eos>"]]

        tr = words("train")
        vocab = {w: i for i, w in enumerate(sorted(set(tr)))}
        return [np.array([vocab[w] for w in words(s)]) for s in ("train", "valid", "test")], len(vocab)
    text = Path(D, FILES["shakes"]).read_text()
    chars = sorted(set(text))
    v = {c: i for i, c in enumerate(chars)}
    ids = np.array([v[c] for c in text])
    n = int(len(ids) * 0.9)
    return [ids[:n], ids[n:], ids[n:]], len(chars)


class LM(nn.Module):
    def __init__(s, V, E, H, L, head, de, d):
        super().__init__()
        s.emb = nn.Embedding(V, E)
        s.rnn = nn.LSTM(E, H, L, dropout=d if L > 1 else 0, batch_first=True)
        s.de, s.d, s.headkind = nn.Dropout(de), nn.Dropout(d), head
        nn.init.uniform_(s.emb.weight, -0.1, 0.1)
        if head == "adaptive":
            s.head = nn.AdaptiveLogSoftmaxWithLoss(H, V, [2000, 6000], div_value=2.0)
        else:
            s.head = nn.Linear(H, V)
            nn.init.zeros_(s.head.bias)
            if head == "tied":
                s.head.weight = s.emb.weight
            else:
                nn.init.uniform_(s.head.weight, -0.1, 0.1)

    def nll(s, x, y, st):
        h, st = s.rnn(s.de(s.emb(x)), st)
        h = s.d(h).reshape(-1, h.shape[-1])
        if s.headkind == "adaptive":
            with torch.autocast(h.device.type, enabled=False):
                return s.head(h.float(), y.reshape(-1)).loss, st
        return F.cross_entropy(s.head(h).float(), y.reshape(-1)), st


def streams(ids, B):
    n = (len(ids) - 1) // B
    x = torch.tensor(ids[: n * B]).view(B, n)
    y = torch.tensor(ids[1 : n * B + 1]).view(B, n)
    return x, y


@torch.no_grad()
def evaluate(m, ids, dev, B=10, T=256):
    m.eval()
    x, y = streams(ids, B)
    st = None
    tot = 0.0
    cnt = 0
    for i in range(0, x.shape[1], T):
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss, st = m.nll(x[:, i : i + T].to(dev), y[:, i : i + T].to(dev), st)
        k = x[:, i : i + T].numel()
        tot += float(loss) * k
        cnt += k
    m.train()
    return tot / cnt


def main(cfg, out):
    torch.manual_seed(1337)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    (tr, va, te), V = load(cfg["corpus"])
    m = LM(V, cfg["E"], cfg["H"], cfg["L"], cfg["head"], cfg["de"], cfg["d"]).to(dev)
    opt = torch.optim.AdamW(
        m.parameters(), lr=cfg["lr"], weight_decay=cfg.get("wd", 0.0), betas=(0.9, cfg.get("b2", 0.999))
    )
    B, T = cfg["B"], cfg["T"]
    x, y = streams(tr, B)
    x, y = x.to(dev), y.to(dev)
    total = int(cfg["tokens"] // (B * T))
    warm = max(1, int(total * cfg.get("warm", 0.02)))
    st = None
    step = 0
    pos = 0
    log = []
    nextval = 0.1
    t0 = time.time()
    while step < total:
        if pos + T > x.shape[1]:
            pos = 0
            st = None
        lr = (
            cfg["lr"]
            * (min(1, (step + 1) / warm))
            * (0.5 * (1 + math.cos(math.pi * step / total)) if step >= warm else 1)
        )
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss, st = m.nll(x[:, pos : pos + T], y[:, pos : pos + T], st)
        st = tuple(s.detach() for s in st)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(m.parameters(), cfg.get("clip", 1.0))
        opt.step()
        step += 1
        pos += T
        if step >= nextval * total or step == total:
            v = evaluate(m, va, dev)
            log.append({"frac": round(step / total, 2), "val": v, "val_ppl": math.exp(v), "t": time.time() - t0})
            nextval += 0.1
            Path(out).write_text(json.dumps({"cfg": cfg, "log": log}))
    te_l = evaluate(m, te, dev)
    Path(out).write_text(
        json.dumps(
            {"cfg": cfg, "log": log, "test": te_l, "test_ppl": math.exp(te_l), "steps": total, "t": time.time() - t0}
        )
    )


if __name__ == "__main__":
    cfgs = json.loads(Path(sys.argv[1]).read_text())
    if len(sys.argv) > 3:
        main(cfgs[sys.argv[3]], sys.argv[2])
        sys.exit()
    import subprocess

    procs = [subprocess.Popen([sys.executable, __file__, sys.argv[1], f"{sys.argv[2]}/{k}.json", k]) for k in cfgs]
    dl = time.time() + float(os.environ.get("DEADLINE", "1e9"))
    for p in procs:
        try:
            p.wait(timeout=max(1, dl - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
    allr = {}
    for k in cfgs:
        try:
            allr[k] = json.loads(Path(f"{sys.argv[2]}/{k}.json").read_text())
        except Exception as e:
            allr[k] = str(e)
    Path(f"{sys.argv[2]}/all.json").write_text(json.dumps(allr))
    for k in cfgs:
        os.remove(f"{sys.argv[2]}/{k}.json") if os.path.exists(f"{sys.argv[2]}/{k}.json") else None
