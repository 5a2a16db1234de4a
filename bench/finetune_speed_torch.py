"""Reference CPU timings in PyTorch for the fine-tuning stage of `rampart text train
--fine-tune` (core/src/text/finetune.rs), so that Rampart's can be quoted beside them.

The same work, step by step (model loading and JSON parsing are not timed):

1. `states_s`: the token vectors entering the first fine-tuned layer, for every training report
   (osha/train.json + osha/train_abex.json), with Rampart's windowing (windows of 254 word
   pieces framed by [CLS] ... [SEP], nothing truncated), windows sorted by length and batched
   under 8192 padded tokens, under torch.no_grad(): the embeddings and the frozen layers.
2. `epoch_s`: one fine-tuning epoch over those reports: batches of 16 reports (shuffled, sorted
   by their longest window within pools of 16 batches, padded to the batch's longest window);
   the top `--layers` BERT layers forward and backward; the token-count-weighted mean over all
   windows of a report, L2-normalised; the head (384 -> 512 -> 7, ReLU, dropout 0.2); focal loss
   (gamma 2, balanced alpha) plus RAT on the pooled embedding (per batch one of none / gaussian
   / fgm / pgd, L2 eps 0.2, PGD 3 steps, taken on the frozen head); AdamW (weight decay 0.01)
   per encoder layer with layer-wise learning rates, Adam for the head. Validation is not
   timed (Rampart's epoch seconds do not include it either).

    python3 bench/finetune_speed_torch.py --layers 1 --json runs/finetune-speed-torch.json
    python3 bench/finetune_speed_torch.py --limit 64          # smoke test
"""
import argparse
import json
import os
import pathlib
import random
import time

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
p.add_argument("--layers", type=int, default=1)
p.add_argument("--batch-size", type=int, default=16)
p.add_argument("--limit", type=int, default=None)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--json", default=None)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)

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
    rows = json.load(open(pathlib.Path(a.data) / "osha" / name, encoding="utf-8"))
    return [" ".join(f"{r['title']} {r['summary']}".split()) for r in rows], [CLASSES.index(r["gold"]) for r in rows]


texts, labels = load("train.json")
t2, l2 = load("train_abex.json")
texts, labels = texts + t2, labels + l2
if a.limit:
    texts, labels = texts[: a.limit], labels[: a.limit]

st = SentenceTransformer(a.model, device="cpu")
bert = st[0].auto_model.float()
hf_tok = st.tokenizer
tokenizer = Tokenizer.from_str(hf_tok.backend_tokenizer.to_str())
tokenizer.no_padding()
tokenizer.no_truncation()
CLS, SEP, PAD = hf_tok.cls_token_id, hf_tok.sep_token_id, hf_tok.pad_token_id
SPAN, HIDDEN = 254, bert.config.hidden_size
n_layers = bert.config.num_hidden_layers
below = n_layers - a.layers


def bias_of(mask):
    """Additive attention mask [b, 1, 1, l]: 0 for tokens, -1e9 for padding (as Rampart)."""
    return (1.0 - mask[:, None, None, :].float()) * -1e9


def run_layers(x, mask, layers):
    b = bias_of(mask)
    for layer in layers:
        out = layer(x, attention_mask=b)
        x = out[0] if isinstance(out, tuple) else out
    return x


# Sanity check (untimed): the layers run one by one give BertModel's own output.
with torch.no_grad():
    ids = torch.tensor([[CLS] + tokenizer.encode("A worker fell from a ladder.", add_special_tokens=False).ids + [SEP]])
    m = torch.ones_like(ids)
    want = bert(input_ids=ids, attention_mask=m).last_hidden_state
    got = run_layers(bert.embeddings(input_ids=ids), m, bert.encoder.layer)
    assert (want - got).abs().max() < 1e-4, "layer-by-layer forward differs from BertModel"

# 1. Token states under the fine-tuned layers.
t0 = time.perf_counter()
windows = []
for t, text in enumerate(texts):
    pieces = tokenizer.encode(text, add_special_tokens=False).ids
    chunks = [pieces[i:i + SPAN] for i in range(0, len(pieces), SPAN)] or [[]]
    windows.extend((t, [CLS] + c + [SEP]) for c in chunks)
order = sorted(range(len(windows)), key=lambda i: len(windows[i][1]))
states = [None] * len(windows)
with torch.no_grad():
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end + 1 - start) * len(windows[order[end]][1]) <= 8192:
            end += 1
        batch = order[start:end]
        l = len(windows[batch[-1]][1])
        ids = torch.full((len(batch), l), PAD, dtype=torch.long)
        mask = torch.zeros(len(batch), l, dtype=torch.long)
        for r, w in enumerate(batch):
            ids[r, : len(windows[w][1])] = torch.tensor(windows[w][1])
            mask[r, : len(windows[w][1])] = 1
        x = run_layers(bert.embeddings(input_ids=ids), mask, bert.encoder.layer[:below])
        for r, w in enumerate(batch):
            states[w] = x[r, : len(windows[w][1])].clone()
        start = end
by_text = [[] for _ in texts]
for w, (t, _) in enumerate(windows):
    by_text[t].append(states[w])
states_s = time.perf_counter() - t0

# 2. One fine-tuning epoch.
top = bert.encoder.layer[below:]
# Rampart's layers have no dropout (sentence-transformers' encoder runs in eval mode too):
# eval() switches BERT's dropout off, gradients flow all the same.
top.eval()
head = nn.Sequential(nn.Linear(HIDDEN, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, len(CLASSES)))
y_all = torch.tensor(labels)
counts = torch.bincount(y_all, minlength=len(CLASSES)).float()
alpha = torch.where(counts > 0, len(y_all) / (len(CLASSES) * counts.clamp_min(1)), torch.zeros(len(CLASSES)))
opts = [torch.optim.AdamW(l.parameters(), lr=5e-5 * 0.8 ** (a.layers - 1 - i), weight_decay=0.01) for i, l in enumerate(top)]
opts.append(torch.optim.Adam(head.parameters(), lr=1e-4, weight_decay=1e-4))
EPS, STEPS = 0.2, 3


def focal(logits, y):
    log_p = F.log_softmax(logits, 1).gather(1, y.unsqueeze(1)).squeeze(1)
    return (-(1 - log_p.exp()).clamp_min(0).pow(2.0) * log_p * alpha[y]).mean()


def scale_rows(d, eps):
    return d / d.norm(dim=1, keepdim=True).clamp_min(1e-12) * eps


def grad_at(x, y):
    head.eval()
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(focal(head(x), y) * len(y), x)
    head.train()
    return g


def perturb(kind, e, y):
    if kind == "gaussian":
        return e + scale_rows(torch.randn_like(e), EPS)
    if kind == "fgm":
        return e + scale_rows(grad_at(e, y), EPS)
    xa = e
    for _ in range(STEPS):
        d = xa + scale_rows(grad_at(xa, y), 2.5 * EPS / STEPS) - e
        xa = (e + d * (EPS / d.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp_max(1.0)).detach()
    return xa


rng = random.Random(a.seed)
idx = list(range(len(texts)))
rng.shuffle(idx)
batches = []
for s in range(0, len(idx), a.batch_size * 16):
    pool = sorted(idx[s:s + a.batch_size * 16], key=lambda t: max(len(w) for w in by_text[t]))
    batches.extend(pool[i:i + a.batch_size] for i in range(0, len(pool), a.batch_size))
rng.shuffle(batches)
t0 = time.perf_counter()
for b in batches:
    wins = [(r, w) for r, t in enumerate(b) for w in by_text[t]]
    l = max(len(w) for _, w in wins)
    x = torch.zeros(len(wins), l, HIDDEN)
    mask = torch.zeros(len(wins), l)
    pool = torch.zeros(len(b), len(wins))
    n = torch.zeros(len(b))
    for i, (r, w) in enumerate(wins):
        x[i, : len(w)] = w
        mask[i, : len(w)] = 1
        n[r] += len(w)
    for i, (r, _) in enumerate(wins):
        pool[r, i] = 1.0 / n[r]
    out = run_layers(x, mask, top)
    e = F.normalize(pool @ (out * mask[:, :, None]).sum(1), dim=1, eps=1e-12)
    y = y_all[b]
    loss = focal(head(e), y)
    kind = rng.choice(["none", "gaussian", "fgm", "pgd"])
    if kind != "none":
        delta = (perturb(kind, e.detach(), y) - e.detach()).detach()
        loss = loss + focal(head(e + delta), y)
    for o in opts:
        o.zero_grad(set_to_none=True)
    loss.backward()
    for o in opts:
        o.step()
epoch_s = time.perf_counter() - t0

out = {
    "torch_version": torch.__version__, "threads": torch.get_num_threads(), "layers": a.layers,
    "reports": len(texts), "windows": len(windows), "tokens": sum(len(w) for _, w in windows),
    "states_s": states_s, "epoch_s": epoch_s,
}
print(json.dumps(out))
if a.json:
    json.dump(out, open(a.json, "w"), indent=1)
