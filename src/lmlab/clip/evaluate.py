"""What a trained CLIP is measured by: zero-shot classification (prompt templates averaged,
chance beside it), image->text and text->image recall@k, a linear probe on frozen image
features. The arithmetic is pure functions over embeddings; ``embed_*`` run the towers.

Legend: N images, K classes, P templates, E embedding width, W image-tower width.
"""

from __future__ import annotations

import torch

from lmlab.clip.text import encode_batch

TEMPLATES = ("a photo of a {}", "a drawing of a {}", "a picture of a {}", "a {}")


@torch.no_grad()
def embed_images(model, x: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor,
                                                                          torch.Tensor]:
    """(normalised embeddings (N, E), tower features (N, W)) of float images, in eval mode."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    embs, feats = [], []
    for i in range(0, len(x), batch_size):
        f = model.image_features(x[i:i + batch_size].to(device))
        feats.append(f.float().cpu())
        embs.append(torch.nn.functional.normalize(model.image_proj(f), dim=-1).float().cpu())
    model.train(was)
    if not embs:  # an empty split (a small folder may have no held-out images)
        return torch.zeros(0, model.image_proj.out_features), torch.zeros(
            0, model.image_proj.in_features)
    return torch.cat(embs), torch.cat(feats)


@torch.no_grad()
def embed_texts(model, texts: list[str], text_len: int, batch_size: int = 256) -> torch.Tensor:
    """Normalised text embeddings (N, E)."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    out = []
    for i in range(0, len(texts), batch_size):
        ids, eos = encode_batch(texts[i:i + batch_size], text_len)
        out.append(model.encode_text(ids.to(device), eos.to(device)).float().cpu())
    model.train(was)
    return torch.cat(out)


def prompt_ensemble(per_template: torch.Tensor) -> torch.Tensor:
    """(P, K, E) normalised embeddings of every template x class -> (K, E): their mean,
    normalised again (CLIP's prompt ensembling)."""
    return torch.nn.functional.normalize(per_template.mean(0), dim=-1)


def class_embeddings(model, classes: list[str], text_len: int,
                     templates=TEMPLATES) -> torch.Tensor:
    per = torch.stack([embed_texts(model, [t.format(c) for c in classes], text_len)
                       for t in templates])  # (P, K, E)
    return prompt_ensemble(per)


def zero_shot_predict(images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(N,) the class whose text embedding is most similar to each image's."""
    return (images @ classes.T).argmax(dim=1)


def zero_shot_accuracy(images: torch.Tensor, classes: torch.Tensor,
                       labels: torch.Tensor) -> float:
    return float((zero_shot_predict(images, classes) == labels).float().mean())


def retrieval_pool(captions: list[str], limit: int) -> list[int]:
    """Indices of the first image of each distinct caption (up to ``limit``): one relevant
    item per query in both directions."""
    first: dict[str, int] = {}
    for i, c in enumerate(captions):
        if c not in first and len(first) < limit:
            first[c] = i
    return list(first.values())


def retrieval_scores(images: torch.Tensor, texts: torch.Tensor) -> dict[str, dict]:
    """Pair i = (image i, text i). recall@{1,5,10}, MRR@10, nDCG@10 of image->text and
    text->image over the pool (lmlab.embed.retrieval's metrics)."""
    from lmlab.embed.retrieval import score_run, top_k

    ids = [str(i) for i in range(len(images))]
    qrels = {i: {i} for i in ids}
    out = {}
    for name, q, d in (("image_to_text", images, texts), ("text_to_image", texts, images)):
        _, idx = top_k(q, d, 10)
        out[name] = score_run({ids[i]: [ids[j] for j in row] for i, row in
                               enumerate(idx.tolist())}, qrels)
    return out


def alternate_split(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (first, second) that split every class's images in turn: its 1st, 3rd, ...
    image to ``first``, its 2nd, 4th, ... to ``second`` (both halves hold every class)."""
    seen: dict[int, int] = {}
    turn = []
    for y in labels.tolist():
        turn.append(seen.get(y, 0) % 2)
        seen[y] = seen.get(y, 0) + 1
    turn_t = torch.tensor(turn, dtype=torch.long)
    return (turn_t == 0).nonzero().flatten(), (turn_t == 1).nonzero().flatten()


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                 test_y: torch.Tensor, seed: int = 0) -> float:
    """Accuracy of a logistic regression on frozen features (standardised on train)."""
    from sklearn.linear_model import LogisticRegression

    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    clf = LogisticRegression(max_iter=500, random_state=seed)
    clf.fit(((train_x - mean) / std).numpy(), train_y.numpy())
    return float(clf.score(((test_x - mean) / std).numpy(), test_y.numpy()))
