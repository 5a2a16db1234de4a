"""Reference CPU timings in PyTorch for the work `rampart text train` does, so that Rampart's
own timings can be quoted beside them as ratios.

What is measured (model loading and JSON parsing are not timed):

1. Embedding (`embed_s`): every ORIGINAL OSHA report (osha/train.json + osha/val.json; not the
   synthetic osha/train_abex.json) through all-MiniLM-L6-v2 with Rampart's windowing rule
   (core/src/text/encoder/mod.rs): the text of a report is its title then its summary, whitespace
   collapsed; its word pieces (no special tokens) are cut into windows of 254 pieces, each
   framed by [CLS] ... [SEP]; the embedding is the token-count-weighted mean of all token
   vectors of all windows (CLS/SEP included, padding masked), L2-normalised. Nothing is
   truncated. Windows are sorted by length and batched under a padded-token budget
   (`--batch-tokens`, 8192 as in Rampart); like Rampart's cache, each distinct text is
   embedded once. The time covers tokenisation, BERT and pooling. The Hugging Face BertModel
   and tokenizer are the ones sentence-transformers wraps (model[0].auto_model,
   model.tokenizer), float32, torch.no_grad().
   A second figure (`embed_st_encode_s`) is plain `SentenceTransformer.encode(texts,
   batch_size=32)`, which TRUNCATES at 256 tokens: it is not the same work, only a familiar
   yardstick.
2. Training (`train_s`): the 30 epochs of Rampart's default recipe (core/src/text/classifier/, rat.rs)
   on cached embeddings of train.json + train_abex.json: MLP 384 -> 512 -> 7 (ReLU, dropout
   0.2), torch.optim.Adam (lr 1e-3, weight_decay 1e-4 added to the gradient as L2, as Burn's
   Adam does; not AdamW), batch 64, focal loss (gamma 2, balanced alpha) and random
   adversarial training (per mini-batch one of none / gaussian / fgm / pgd, p = 0.25 each,
   L2 eps 0.05, PGD 3 steps of 2.5*eps/3; the perturbed loss is added with weight 1).
   The synthetic reports' embeddings are computed untimed (`--abex-vectors embed`, default)
   or replaced by random unit vectors (`--abex-vectors random`); the output says which.

Run (from the repository root; uses ../shared/models/all-MiniLM-L6-v2 and ../shared/data):

    python3 bench/text_speed_torch.py --json runs/text-speed-torch.json
    python3 bench/text_speed_torch.py --limit 50 --epochs 2          # smoke test

Options: --model DIR, --data DIR (default $RAMPART_DATA or ../shared/data), --threads N
(default os.cpu_count()), --batch-tokens N, --epochs N, --limit N (only the first N original
reports, and the first N synthetic ones, for smoke tests), --abex-vectors embed|random,
--json FILE.
"""
import argparse
import json
import os
import pathlib
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer

root = pathlib.Path(__file__).resolve().parent.parent
p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--model", default=str(root / "../shared/models/all-MiniLM-L6-v2"))
p.add_argument("--data", default=os.environ.get("RAMPART_DATA", str(root / "../shared/data")))
p.add_argument("--threads", type=int, default=os.cpu_count())
p.add_argument("--batch-tokens", type=int, default=8192)
p.add_argument("--epochs", type=int, default=30)
p.add_argument("--limit", type=int, default=None)
p.add_argument("--abex-vectors", choices=["embed", "random"], default="embed")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--json", default=None)
a = p.parse_args()

torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)

# The seven classes in Rampart's order (core/src/data/text.rs): the label is the position here.
CLASSES = [
    "FALLS,SLIPS,TRIPS",
    "CONTACT WITH OBJECTS AND EQUIPMENT",
    "EXPOSURE TO HARMFUL SUBSTANCES OR ENVIRONMENTS",
    "TRANSPORTATION INCIDENTS",
    "FIRES AND EXPLOSIONS",
    "OVEREXERTION AND BODILY REACTION",
    "VIOLENCE AND OTHER INJURIES BY PERSONS OR ANIMALS",
]


def load(name):
    """(texts, labels) of an OSHA file; rows have `id` or `idx`, synthetic ones an empty summary."""
    rows = json.load(open(pathlib.Path(a.data) / "osha" / name, encoding="utf-8"))
    texts = [" ".join(f"{r['title']} {r['summary']}".split()) for r in rows]
    return texts, [CLASSES.index(r["gold"]) for r in rows]


train_texts, train_labels = load("train.json")
val_texts, _ = load("val.json")
abex_texts, abex_labels = load("train_abex.json")
originals = train_texts + val_texts
if a.limit is not None:
    originals = originals[: a.limit]
    abex_texts, abex_labels = abex_texts[: a.limit], abex_labels[: a.limit]
n_train = min(len(train_texts), len(originals))  # the training reports among `originals`

st = SentenceTransformer(a.model, device="cpu")
bert = st[0].auto_model.eval().float()
hf_tok = st.tokenizer
# Rampart uses the tokenizer.json as shipped, with its padding (128) and truncation switched off.
tokenizer = Tokenizer.from_str(hf_tok.backend_tokenizer.to_str())
tokenizer.no_padding()
tokenizer.no_truncation()
CLS, SEP, PAD = hf_tok.cls_token_id, hf_tok.sep_token_id, hf_tok.pad_token_id
SPAN = 256 - 2
HIDDEN = bert.config.hidden_size


def embed_windowed(texts):
    """Unit embeddings [len(texts), hidden] by Rampart's rule; also the window count and
    tokenisation seconds."""
    t0 = time.perf_counter()
    windows = []  # (text index, ids with [CLS]/[SEP])
    for t, text in enumerate(texts):
        pieces = tokenizer.encode(text, add_special_tokens=False).ids
        chunks = [pieces[i:i + SPAN] for i in range(0, len(pieces), SPAN)] or [[]]
        windows.extend((t, [CLS] + c + [SEP]) for c in chunks)
    tokenize_s = time.perf_counter() - t0
    order = sorted(range(len(windows)), key=lambda i: len(windows[i][1]))
    sums = torch.zeros(len(texts), HIDDEN, dtype=torch.float64)
    counts = torch.zeros(len(texts), dtype=torch.float64)
    start = 0
    with torch.no_grad():
        while start < len(order):
            # Grow the batch while its padded size stays within the budget (as Rampart does).
            end = start + 1
            while end < len(order) and (end + 1 - start) * len(windows[order[end]][1]) <= max(a.batch_tokens, 1):
                end += 1
            batch = [windows[i] for i in order[start:end]]
            b, l = len(batch), len(batch[-1][1])
            ids = torch.full((b, l), PAD, dtype=torch.long)
            mask = torch.zeros(b, l, dtype=torch.long)
            for r, (_, w) in enumerate(batch):
                ids[r, : len(w)] = torch.tensor(w)
                mask[r, : len(w)] = 1
            tokens = bert(input_ids=ids, attention_mask=mask).last_hidden_state  # [b, l, h]
            summed = (tokens * mask.unsqueeze(2).float()).sum(1)  # [b, h]
            owner = torch.tensor([t for t, _ in batch])
            sums.index_add_(0, owner, summed.double())
            counts.index_add_(0, owner, mask.sum(1).double())
            start = end
    mean = sums / counts.clamp_min(1).unsqueeze(1)
    emb = (mean / mean.norm(dim=1, keepdim=True).clamp_min(1e-12)).float()
    return emb, len(windows), tokenize_s


# Warm-up (untimed): one short window through both paths, so neither pays first-call costs.
embed_windowed(["warm up"])
st.encode(["warm up"], batch_size=32)

# Like Rampart's embedding cache, each distinct text is embedded once.
unique = list(dict.fromkeys(originals))
t0 = time.perf_counter()
emb_unique, n_windows, tokenize_s = embed_windowed(unique)
embed_s = time.perf_counter() - t0
row = {t: i for i, t in enumerate(unique)}
emb_orig = emb_unique[[row[t] for t in originals]]

t0 = time.perf_counter()
st_emb = st.encode(unique, batch_size=32, convert_to_numpy=True)
embed_st_encode_s = time.perf_counter() - t0

# Sanity check: within one window the rule is sentence-transformers' own embedding.
fits = [i for i, t in enumerate(unique) if len(tokenizer.encode(t, add_special_tokens=False).ids) <= SPAN]
st_unit = st_emb / np.linalg.norm(st_emb, axis=1, keepdims=True)
agree = float(np.min(np.sum(st_unit[fits] * emb_unique[fits].numpy(), 1))) if fits else float("nan")

# Training inputs: the training reports' embeddings plus the synthetic reports'.
if a.abex_vectors == "embed":
    t0 = time.perf_counter()
    abex_unique = list(dict.fromkeys(abex_texts))
    e, _, _ = embed_windowed(abex_unique)
    r = {t: i for i, t in enumerate(abex_unique)}
    abex_emb = e[[r[t] for t in abex_texts]]
    abex_embed_s = time.perf_counter() - t0
else:
    abex_emb = F.normalize(torch.randn(len(abex_texts), HIDDEN), dim=1)
    abex_embed_s = None
x_all = torch.cat([emb_orig[:n_train], abex_emb]).contiguous()
y_all = torch.tensor(train_labels[:n_train] + abex_labels, dtype=torch.long)

# Focal loss alpha, balanced: alpha_c = n / (k * count_c), Rampart's `balanced` (classes absent
# from the set get 0). These weights average to 1 over the training samples (sum_c count_c *
# alpha_c = n), which is the normalisation Rampart applies; no further rescaling.
k = len(CLASSES)
counts = torch.bincount(y_all, minlength=k).float()
alpha = torch.where(counts > 0, len(y_all) / (k * counts.clamp_min(1)), torch.zeros(k))
GAMMA, EPS, PGD_STEPS, RAT_WEIGHT, BATCH = 2.0, 0.05, 3, 1.0, 64


def focal_per_sample(logits, y):
    log_p = F.log_softmax(logits, 1).gather(1, y.unsqueeze(1)).squeeze(1)
    modulator = (1 - log_p.exp()).clamp_min(0).pow(GAMMA)
    return -modulator * log_p * alpha[y]


def scale_rows(d, eps):
    return d / d.norm(dim=1, keepdim=True).clamp_min(1e-12) * eps


model = nn.Sequential(nn.Linear(HIDDEN, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, k))
opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)  # L2 on the gradient


def input_grad(at, y):
    """Input gradient of the summed focal loss on the frozen model (eval mode: dropout off).
    Equivalent to Rampart's frozen copy: same weights, dropout off, no parameter gradients."""
    at = at.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(focal_per_sample(model(at), y).sum(), at)
    return g


def perturb(kind, x, y):
    if kind == "gaussian":
        return x + scale_rows(torch.randn_like(x), EPS)
    model.eval()
    try:
        if kind == "fgm":
            return x + scale_rows(input_grad(x, y), EPS)
        step, xa = 2.5 * EPS / PGD_STEPS, x
        for _ in range(PGD_STEPS):
            d = xa + scale_rows(input_grad(xa, y), step) - x
            # Project onto the L2 ball of radius eps around the clean embedding.
            factor = (EPS / d.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp_max(1.0)
            xa = (x + d * factor).detach()
        return xa
    finally:
        model.train()


KINDS = ["none", "gaussian", "fgm", "pgd"]
draw = random.Random(a.seed)
drawn = dict.fromkeys(KINDS, 0)
model.train()
t0 = time.perf_counter()
for epoch in range(a.epochs):
    order = torch.randperm(len(y_all))
    loss_sum = 0.0
    for s in range(0, len(order), BATCH):
        idx = order[s:s + BATCH]
        xb, yb = x_all[idx], y_all[idx]
        kind = KINDS[draw.randrange(4)]
        drawn[kind] += 1
        total = focal_per_sample(model(xb), yb).mean()
        if kind != "none":
            total = total + RAT_WEIGHT * focal_per_sample(model(perturb(kind, xb, yb)), yb).mean()
        loss_sum += total.item() * len(idx)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
train_s = time.perf_counter() - t0

out = {
    "torch_version": torch.__version__,
    "threads": torch.get_num_threads(),
    "reports": len(originals),
    "unique_texts": len(unique),
    "windows": n_windows,
    "batch_tokens": a.batch_tokens,
    "embed_s": round(embed_s, 3),
    "tokenize_s": round(tokenize_s, 3),
    "embed_st_encode_s": round(embed_st_encode_s, 3),
    "min_cosine_vs_st_encode_one_window": round(agree, 7),
    "train_s": round(train_s, 3),
    "train_samples": len(y_all),
    "epochs": a.epochs,
    "abex_vectors": a.abex_vectors,
    "abex_embed_s": None if abex_embed_s is None else round(abex_embed_s, 3),
    "final_train_loss": round(loss_sum / len(y_all), 4) if a.epochs else None,
    "perturbations": drawn,
}
print(f"torch {out['torch_version']}, {out['threads']} threads, CPU")
print(f"embed (Rampart rule, windows of 254 pieces, no truncation): {len(originals)} reports "
      f"({len(unique)} distinct), {n_windows} windows, {embed_s:.2f} s "
      f"(tokenisation {tokenize_s:.2f} s), {len(unique) / embed_s:.1f} texts/s")
print(f"embed (sentence-transformers encode, batch 32, TRUNCATED at 256 tokens): "
      f"{embed_st_encode_s:.2f} s")
print(f"check: min cosine vs encode over {len(fits)} one-window texts = {agree:.7f}")
print(f"train: {a.epochs} epochs on {len(y_all)} samples ({n_train} reports + {len(abex_emb)} "
      f"synthetic, {'embedded' if a.abex_vectors == 'embed' else 'RANDOM unit vectors'}), "
      f"{train_s:.2f} s, final loss {out['final_train_loss']}, perturbations {drawn}")
if a.json:
    pathlib.Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print(f"wrote {a.json}", file=sys.stderr)
