"""The report's CLIP section: zero-shot accuracy on held-out classes beside chance, retrieval
recall@k both ways, the linear probe, retrieved examples, and the two pictures ``lmlab clip``
drew (similarity matrix, retrieved images). Numbers come from summary.json and clip/ only."""

from __future__ import annotations

from lmlab.report.collect import RunData
from lmlab.report.render import Figure
from lmlab.report.tables import Table

ZERO_SHOT = (("heldout", "held-out classes"), ("heldout_among_all", "held-out among all classes"),
             ("seen", "seen classes, new images"))
PICTURES = (("similarity.png", "cosine similarity of test images and their captions"),
            ("retrieved.png", "retrieved images for held-out class prompts (text -> image)"))


def _runs(runs: list[RunData]) -> list[RunData]:
    return [r for r in runs if r.stage == "clip" and r.finished and (r.summary or {}).get("clip")]


def zero_shot_table(runs: list[RunData]) -> Table:
    t = Table("Zero-shot classification", ["run", "model", "data", "steps", "images of",
                                           "classes", "accuracy", "chance"],
              ["text", "text", "text", "int", "text", "int", "pct", "pct"])
    for r in runs:
        s = r.summary
        for key, name in ZERO_SHOT:
            z = s["clip"]["zero_shot"].get(key)
            if z:
                t.rows.append([r.label, s.get("model"), s.get("data"), s.get("steps"), name,
                               z.get("classes"), z.get("accuracy"), z.get("chance")])
    t.note = ("Held-out classes: no training caption names them, every word of their names is "
              "in some training caption. Class text = the mean embedding of the prompt "
              "templates (CLIP's prompt ensembling).")
    return t


def template_table(runs: list[RunData]) -> Table | None:
    t = Table("Zero-shot on held-out classes per prompt template", ["run", "template",
                                                                    "accuracy"],
              ["text", "text", "pct"])
    for r in runs:
        for tpl, acc in r.summary["clip"]["zero_shot"].get("per_template", {}).items():
            t.rows.append([r.label, tpl, acc])
    return t if t.rows else None


def retrieval_table(runs: list[RunData]) -> Table:
    t = Table("Image-text retrieval on test pairs", ["run", "direction", "pairs", "recall@1",
                                                      "recall@5", "recall@10", "MRR@10"],
              ["text", "text", "int", "pct", "pct", "pct", "num"])
    for r in runs:
        ret = r.summary["clip"]["retrieval"]
        for key in ("image_to_text", "text_to_image"):
            m = ret[key]
            t.rows.append([r.label, key.replace("_to_", " -> "), ret.get("pool"),
                           m.get("recall@1"), m.get("recall@5"), m.get("recall@10"),
                           m.get("mrr@10")])
    t.note = "One caption per image (distinct captions), chance recall@1 = 1 / pairs."
    return t


def probe_table(runs: list[RunData]) -> Table | None:
    t = Table("Linear probe on frozen image features", ["run", "classes", "train images",
                                                        "accuracy", "chance"],
              ["text", "text", "int", "pct", "pct"])
    for r in runs:
        for key, p in r.summary["clip"]["probe"].items():
            t.rows.append([r.label, key, p.get("train_images"), p.get("accuracy"),
                           p.get("chance")])
    return t if t.rows else None


def examples_table(runs: list[RunData]) -> Table | None:
    t = Table("Retrieved examples (held-out class prompts)", ["run", "query",
                                                              "top images' captions"],
              ["text", "text", "text"])
    for r in runs:
        for ex in r.summary["clip"].get("examples", [])[:6]:
            t.rows.append([r.label, ex["query"], " | ".join(ex["retrieved"])])
    return t if t.rows else None


def clip_items(runs: list[RunData]) -> list:
    """The section's tables and figures, [] when no finished clip run is among ``runs``."""
    mine = _runs(runs)
    if not mine:
        return []
    items: list = [zero_shot_table(mine)]
    items += [t for t in (template_table(mine), retrieval_table(mine), probe_table(mine),
                          examples_table(mine)) if t]
    for i, r in enumerate(mine):
        for name, caption in PICTURES:
            png = r.path / "clip" / name
            if png.exists():
                items.append(Figure(f"clip{i:02d}-{r.label.replace('/', '_')}-{png.stem}",
                                    png.read_bytes(), f"{r.label}: {caption}"))
    return items
