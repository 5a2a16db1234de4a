"""Reference sentence embeddings for Rampart's Burn encoder (core/src/text/encoder/mod.rs), computed
independently with PyTorch: sentence-transformers' own `encode` for texts that fit the
256-token window, and Hugging Face's BertModel with the same windowing rule for longer ones
(consecutive windows of 254 word pieces framed by [CLS]/[SEP]; the mean over all windows'
token vectors, L2-normalised).

    pip install sentence-transformers
    python3 bench/minilm_reference.py [--model DIR] [--data DIR] [--count 17] > core/tests/fixtures/minilm_reference.json

Writes JSON: the README's two reference cosines and, for the first `count` validation reports
plus the longest ones, their text and embedding.
"""
import argparse
import json
import os
import pathlib
import re
import sys

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

root = pathlib.Path(__file__).resolve().parent.parent
p = argparse.ArgumentParser()
p.add_argument("--model", default=str(root / "../shared/models/all-MiniLM-L6-v2"))
p.add_argument("--data", default=os.environ.get("RAMPART_DATA", str(root / "../shared/data")))
p.add_argument("--count", type=int, default=17)
a = p.parse_args()

st = SentenceTransformer(a.model, device="cpu")
st.max_seq_length = 256
bert = st[0].auto_model.eval()
tok = st.tokenizer


def text_of(row):
    return re.sub(r"\s+", " ", f"{row['title']} {row['summary']}").strip()


def windowed(text, span=254):
    pieces = tok(text, add_special_tokens=False)["input_ids"] or []
    chunks = [pieces[i:i + span] for i in range(0, len(pieces), span)] or [[]]
    total, count = torch.zeros(bert.config.hidden_size, dtype=torch.float64), 0
    with torch.no_grad():
        for c in chunks:
            ids = torch.tensor([[tok.cls_token_id] + c + [tok.sep_token_id]])
            out = bert(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]
            total += out.double().sum(0)
            count += ids.shape[1]
    v = total / count
    return (v / v.norm()).float().numpy(), len(pieces)


pairs = [("A man is playing a guitar.", "Someone is strumming a guitar."),
         ("A man is playing a guitar.", "The stock market fell sharply today.")]
cos = []
for x, y in pairs:
    e = st.encode([x, y], normalize_embeddings=True)
    cos.append({"a": x, "b": y, "cosine": float(np.dot(e[0], e[1]))})

rows = json.load(open(pathlib.Path(a.data) / "osha/val.json"))
texts = [text_of(r) for r in rows]
lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
longest = sorted(range(len(texts)), key=lambda i: -lengths[i])[:3]
print(f"{sum(n > 254 for n in lengths)} of {len(texts)} validation reports run past one window "
      f"(longest: {max(lengths)} word pieces)", file=sys.stderr)
chosen = list(range(a.count)) + [i for i in longest if i >= a.count]
reports = []
for i in chosen:
    emb, n = windowed(texts[i])
    if n <= 254:
        # Inside one window the rule is sentence-transformers' own embedding: check it.
        ref = st.encode([texts[i]], normalize_embeddings=True)[0]
        assert float(np.dot(ref, emb)) > 1 - 1e-5, (i, float(np.dot(ref, emb)))
        emb = ref
    reports.append({"index": i, "word_pieces": n, "text": texts[i], "embedding": [round(float(v), 7) for v in emb]})
print(json.dumps({"model": "all-MiniLM-L6-v2", "window": 256, "pairs": cos, "reports": reports}))
