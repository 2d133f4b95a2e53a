"""After training: every measurement of ``lmlab clip`` in one dict (summary.json's ``clip``)
and the two figures the report shows (similarity matrix, retrieved examples)."""

from __future__ import annotations

import torch

from lmlab.clip import evaluate as E


def _embed(model, split, mean, std):
    from lmlab.clip.data import normalise

    return E.embed_images(model, normalise(split.x, mean, std))


def zero_shot(model, data, mean, std, text_len: int, templates) -> dict:
    """Held-out images among the held-out classes (and among all), seen-class test images
    among the seen classes; each with its chance level; per template and ensembled."""
    held_img, _ = _embed(model, data.test_heldout, mean, std)
    seen_img, _ = _embed(model, data.test_seen, mean, std)
    held_y = data.test_heldout.labels - data.n_seen
    out: dict = {"templates": list(templates)}
    if len(held_img):
        cls = E.class_embeddings(model, data.heldout, text_len, templates)
        every = E.class_embeddings(model, data.classes, text_len, templates)
        out["heldout"] = {"accuracy": E.zero_shot_accuracy(held_img, cls, held_y),
                          "chance": 1 / len(data.heldout), "classes": len(data.heldout),
                          "images": len(held_img)}
        out["heldout_among_all"] = {
            "accuracy": E.zero_shot_accuracy(held_img, every, data.test_heldout.labels),
            "chance": 1 / len(data.classes), "classes": len(data.classes)}
        out["per_template"] = {t: E.zero_shot_accuracy(
            held_img, E.class_embeddings(model, data.heldout, text_len, (t,)), held_y)
            for t in templates}
    if len(seen_img):
        cls = E.class_embeddings(model, data.classes[:data.n_seen], text_len, templates)
        out["seen"] = {"accuracy": E.zero_shot_accuracy(seen_img, cls, data.test_seen.labels),
                       "chance": 1 / data.n_seen, "classes": data.n_seen,
                       "images": len(seen_img)}
    return out


def retrieval(model, data, mean, std, text_len: int, limit: int) -> tuple[dict, dict]:
    """recall@k both ways over distinct captions of the test images, held-out and seen
    classes taken in turn (so the pool, and the retrieved examples, hold both)."""
    x = torch.cat([data.test_seen.x, data.test_heldout.x])
    captions = data.test_seen.captions + data.test_heldout.captions
    order = _interleave(list(range(len(data.test_seen), len(captions))),
                        list(range(len(data.test_seen))))
    pool = [order[i] for i in E.retrieval_pool([captions[j] for j in order], limit)]
    from lmlab.clip.data import normalise

    img, _ = E.embed_images(model, normalise(x[pool], mean, std))
    txt = E.embed_texts(model, [captions[i] for i in pool], text_len)
    scores = E.retrieval_scores(img, txt)
    scores["pool"] = len(pool)
    return scores, {"x": x[pool], "captions": [captions[i] for i in pool], "img": img,
                    "txt": txt}


def _interleave(a: list, b: list) -> list:
    out = [v for pair in zip(a, b) for v in pair]
    return out + a[len(b):] + b[len(a):]


def probe(model, data, mean, std, n_train: int, seed: int) -> dict:
    """Logistic regression on frozen image-tower features: trained on training images, tested
    on new images of those classes; and on half the held-out images, tested on the other half."""
    from lmlab.clip.data import Split

    try:
        import sklearn  # noqa: F401
    except ImportError:
        print("[lmlab] linear probe skipped: pip install scikit-learn (lmlab[clip])")
        return {}
    k = min(n_train, len(data.train))
    sub = Split(data.train.x[:k], data.train.captions[:k], data.train.labels[:k])
    _, tr = _embed(model, sub, mean, std)
    out = {}
    if len(data.test_seen):
        _, te = _embed(model, data.test_seen, mean, std)
        out["seen"] = {"accuracy": E.linear_probe(tr, sub.labels, te, data.test_seen.labels,
                                                  seed),
                       "chance": 1 / data.n_seen, "train_images": k}
    h = data.test_heldout
    if len(h) >= 4 and len(set(h.labels.tolist())) > 1:
        _, f = _embed(model, h, mean, std)
        a, b = E.alternate_split(h.labels)
        out["heldout"] = {"accuracy": E.linear_probe(f[a], h.labels[a], f[b], h.labels[b], seed),
                          "chance": 1 / len(data.heldout), "train_images": len(a)}
    return out


def _image(ax, x: torch.Tensor):
    ax.imshow(x.permute(1, 2, 0).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def similarity_png(pool: dict, n: int = 10) -> bytes:
    """Cosine similarity of n images (columns) and their n captions (rows)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n, len(pool["captions"]))
    sim = (pool["txt"][:n] @ pool["img"][:n].T).numpy()
    fig = plt.figure(figsize=(2 + 0.75 * n, 1.2 + 0.45 * n))
    grid = fig.add_gridspec(2, n, height_ratios=[1, n / 1.6], hspace=0.05, wspace=0.05)
    for j in range(n):
        _image(fig.add_subplot(grid[0, j]), pool["x"][j])
    ax = fig.add_subplot(grid[1, :])
    ax.imshow(sim, cmap="viridis", aspect="auto")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if sim[i, j] < sim.max() * 0.7 else "black")
    ax.set_yticks(range(n), [c[:32] for c in pool["captions"][:n]], fontsize=7)
    ax.set_xticks([])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def retrieved_png(queries: list[str], q_emb: torch.Tensor, pool: dict, k: int = 5) -> bytes:
    """Each query text (a held-out class prompt) and its top-k images from the pool."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = (q_emb @ pool["img"].T).topk(min(k, len(pool["captions"])), dim=1)
    fig, axes = plt.subplots(len(queries), top.indices.shape[1], squeeze=False,
                             figsize=(1.3 * top.indices.shape[1] + 2, 1.3 * len(queries)))
    for i, q in enumerate(queries):
        for j, idx in enumerate(top.indices[i].tolist()):
            _image(axes[i, j], pool["x"][idx])
            axes[i, j].set_title(f"{float(top.values[i, j]):.2f}", fontsize=6)
        axes[i, 0].set_ylabel(q[:28], fontsize=7, rotation=0, ha="right", va="center")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def examples(queries: list[str], q_emb: torch.Tensor, pool: dict, k: int = 3) -> list[dict]:
    """For each query, the captions of its top-k images (the report's examples table)."""
    top = (q_emb @ pool["img"].T).topk(min(k, len(pool["captions"])), dim=1)
    return [{"query": q, "retrieved": [pool["captions"][j] for j in row],
             "scores": [round(float(s), 3) for s in vals]}
            for q, row, vals in zip(queries, top.indices.tolist(), top.values)]
