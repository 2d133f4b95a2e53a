"""`lmlab clip`: a small CLIP trained from scratch on image-caption pairs rendered offline.

Setup (render the pairs, hold out classes, tokenize captions by character, build the towers),
then the shared loop with ``ClipObjective`` (symmetric InfoNCE, learned temperature) over a
``CaptionStream``, then zero-shot accuracy on the held-out classes beside chance, retrieval
recall@k both ways, a linear probe, two figures, ``final/`` and the summary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmlab.clip import IMAGE_ENCODERS
from lmlab.config import opt
from lmlab.train.config import TrainConfig

HELP = "CLIP from scratch on rendered shapes / emoji / icons: zero-shot on held-out classes"
TEMPLATES = ["a photo of a {}", "a drawing of a {}", "a picture of a {}", "a {}"]


@dataclass
class Config(TrainConfig):
    model: str = opt("cnn", "image tower: cnn (the vision lab's CNN) or vit (small ViT)",
                     choices=IMAGE_ENCODERS)
    data: str = opt("shapes", "pairs: shapes | emoji | icons (several joined by commas), or "
                              "folder:<path> (images + captions.jsonl or captions.tsv)")
    image_size: int = opt(32, "images are drawn / resized to this square side", min=8)
    train_images: int = opt(10000, "drawn sources: training pairs to render", min=2)
    test_per_class: int = opt(20, "drawn sources: test images per class (seen and held out)",
                              min=1)
    holdout: float = opt(0.2, "fraction of classes held out of training (every word of their "
                              "names still appears in training)", min=0, max=0.9)
    max_classes: int | None = opt(None, "drawn sources: use at most this many classes per "
                                        "source (a seeded sample)", min=2)
    widths: list[int] = opt([32, 64, 128], "model=cnn: channels of each stage")
    patch: int = opt(4, "model=vit: patch side", min=1)
    vit_dim: int = opt(64, "model=vit: width", min=8)
    vit_depth: int = opt(2, "model=vit: blocks", min=1)
    text_dim: int = opt(64, "text tower width", min=8)
    text_depth: int = opt(2, "text tower blocks (causal, character vocabulary)", min=1)
    heads: int = opt(4, "attention heads of both transformers", min=1)
    embed_dim: int = opt(64, "shared embedding width (the projections' output)", min=2)
    templates: list[str] = opt(TEMPLATES, "zero-shot prompt templates ({} = class name), "
                                          "averaged")
    retrieval_size: int = opt(256, "recall@k over this many test pairs (distinct captions)",
                              min=2)
    probe_images: int = opt(2000, "training images the linear probe fits on", min=2)
    eval_batch_size: int = opt(256, "images per forward pass when evaluating", min=1)
    figures: bool = opt(True, "draw the similarity matrix and retrieved examples (clip/*.png)")
    # loop defaults that suit a small CLIP
    max_len: int = opt(64, "characters per caption (longer ones are cut)", min=8)
    lr: float = opt(2e-3, "peak learning rate", min=0.0, min_exclusive=True)
    warmup_steps: int = opt(50, "linear warmup steps", min=0)
    weight_decay: float = opt(0.05, "AdamW weight decay (matrices only)", min=0)
    batch_size: int = opt(128, "pairs per batch: each image's negatives are the other "
                               "captions", min=2)
    max_steps: int = opt(600, "optimizer steps to run", min=0)
    save_every: int = opt(200, "steps between checkpoints (0 = only at the end)", min=0)
    log_every: int = opt(10, "steps between log lines / metrics.jsonl rows", min=1)

    def validate(self) -> list[str]:
        problems = []
        if self.model == "vit" and self.image_size % self.patch:
            problems.append(f"image_size={self.image_size} is not a multiple of "
                            f"patch={self.patch}")
        for dim in ("text_dim", "vit_dim"):
            if getattr(self, dim) % self.heads or (getattr(self, dim) // self.heads) % 2:
                problems.append(f"{dim}={getattr(self, dim)}: must split into heads={self.heads}"
                                " heads of an even width (RoPE turns pairs of features)")
        if any("{}" not in t for t in self.templates) or not self.templates:
            problems.append("templates: each needs {} where the class name goes")
        if self.eval_every and self.eval_every % self.log_every:
            problems.append(f"eval_every={self.eval_every}: must be a multiple of log_every="
                            f"{self.log_every}")
        return problems


class ClipObjective:
    """Symmetric InfoNCE summed over the batch's pairs; the scale is the model's learned one."""

    def count(self, batch: dict) -> int:
        return len(batch["eos"])

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        from lmlab.losses.contrastive import clip_loss, in_batch_accuracy

        images, texts, scale = model(batch["x"], batch["ids"], batch["eos"])  # (B, E) x2, ()
        losses = clip_loss(images, texts, scale)  # (B,)
        with torch.no_grad():
            acc = in_batch_accuracy(images, texts).sum()
        return losses.sum(), {"accuracy": float(acc), "scale": float(scale.detach()) * len(losses)}


def shape_of(cfg: Config):
    from lmlab.clip.model import ClipShape

    return ClipShape(cfg.model, cfg.image_size, list(cfg.widths), cfg.patch, cfg.vit_dim,
                     cfg.vit_depth, cfg.text_dim, cfg.text_depth, cfg.heads, cfg.max_len,
                     cfg.embed_dim)


def run(cfg: Config) -> dict:
    from lmlab.clip import results as R
    from lmlab.clip.data import CaptionStream, load_data, normalise
    from lmlab.clip.model import build_clip
    from lmlab.clip.text import encode_batch
    from lmlab.common import is_main, print0, rank, world_size
    from lmlab.train.distributed import barrier
    from lmlab.train.loop import train
    from lmlab.vision.train import ImageStream

    data = load_data(cfg)  # rendered and checked before the run folder is touched
    run_, device, dtype = _start(cfg)
    x = data.train.x.float() / 255
    mean, std = x.mean((0, 2, 3)), x.std((0, 2, 3)).clamp_min(1e-3)
    ids, eos = encode_batch(data.train.captions, cfg.max_len)
    images = ImageStream(normalise(data.train.x, mean, std).to(device),
                         torch.arange(len(data.train), device=device), cfg.batch_size,
                         seed=cfg.seed, rank=rank(), world=world_size())
    stream = CaptionStream(images, ids.to(device), eos.to(device))
    model = build_clip(shape_of(cfg)).to(device)
    params = sum(p.numel() for p in model.parameters())
    print0(f"[lmlab] clip: {cfg.model} image tower + char transformer ({params:,} parameters)"
           f"; {cfg.max_steps} steps of {images.global_batch} pairs "
           f"({cfg.max_steps * images.global_batch / len(data.train):.1f} epochs), {device}")

    def eval_fn(m) -> dict:
        z = R.zero_shot(m, data, mean, std, cfg.max_len, cfg.templates)
        return {f"eval/zero_shot_{k}": v["accuracy"] for k, v in z.items()
                if isinstance(v, dict) and "accuracy" in v}

    result = train(model, ClipObjective(), stream, cfg, run_, dtype=dtype, eval_fn=eval_fn,
                   save_buffers=True)
    summary: dict = {"stage": "clip", "model": cfg.model, "data": cfg.data, "params": params,
                     "steps": result.step, "train_seconds": round(result.seconds, 1),
                     "train_pairs": len(data.train), "classes": len(data.classes),
                     "heldout_classes": data.heldout}
    if result.metrics:
        timed = result.metrics[1:] or result.metrics  # the first step pays one-off costs
        summary.update(final_loss=result.metrics[-1]["train/loss"],
                       learned_scale=float(model.scale().detach()),
                       pairs_per_s=round(images.global_batch * len(timed) / max(
                           1e-9, sum(m["train/step_s"] for m in timed)), 1))
    if is_main():
        summary["clip"] = _measure(cfg, model, data, mean, std, run_)
        _save_final(cfg, model, mean, std, run_)
        run_.write_json("summary.json", summary)
        print0(_table_text(summary["clip"]))
        print0(f"[lmlab] wrote {run_.path}/ (final/, clip/, metrics.jsonl, summary.json)")
    barrier()
    return summary


def _start(cfg: Config):
    from lmlab.common import pick_device, pick_dtype, seed_everything
    from lmlab.runs import prepare_run
    from lmlab.train.distributed import init_distributed

    device = pick_device(cfg.device)
    init_distributed(device)
    dtype = pick_dtype(cfg.dtype, device)
    run_ = prepare_run(cfg, "clip")
    seed_everything(cfg.seed)
    return run_, device, dtype


def _measure(cfg: Config, model, data, mean, std, run_) -> dict:
    from lmlab.clip import evaluate as E
    from lmlab.clip import results as R

    out = {"zero_shot": R.zero_shot(model, data, mean, std, cfg.max_len, cfg.templates),
           "probe": R.probe(model, data, mean, std, cfg.probe_images, cfg.seed)}
    out["retrieval"], pool = R.retrieval(model, data, mean, std, cfg.max_len, cfg.retrieval_size)
    queries = [cfg.templates[0].format(c) for c in (data.heldout or data.classes)[:6]]
    q_emb = E.embed_texts(model, queries, cfg.max_len)
    out["examples"] = R.examples(queries, q_emb, pool)
    if cfg.figures:
        try:
            folder = run_.path / "clip"
            folder.mkdir(exist_ok=True)
            (folder / "similarity.png").write_bytes(R.similarity_png(pool))
            (folder / "retrieved.png").write_bytes(R.retrieved_png(queries, q_emb, pool))
        except ImportError:  # matplotlib is the report extra
            print("[lmlab] figures skipped: pip install matplotlib (the report extra)")
    return out


def _save_final(cfg: Config, model, mean, std, run_) -> None:
    from dataclasses import asdict

    from lmlab.clip.model import save_clip
    from lmlab.runs import commit_folder, temp_folder

    tmp = temp_folder(run_.path)
    save_clip(model, shape_of(cfg), tmp, {"mean": mean.tolist(), "std": std.tolist(),
                                          "shape": asdict(shape_of(cfg)), "data": cfg.data})
    commit_folder(tmp, run_.final)


def _table_text(m: dict) -> str:
    z, lines = m["zero_shot"], []
    for key, name in (("heldout", "held-out classes"), ("heldout_among_all", "held-out among all"),
                      ("seen", "seen classes (new images)")):
        if key in z:
            lines.append(f"  zero-shot {name:<27} {z[key]['accuracy']:.1%}  (chance "
                         f"{z[key]['chance']:.1%}, {z[key]['classes']} classes)")
    for key, p in m["probe"].items():
        lines.append(f"  {'linear probe, ' + key + ' classes':<37} {p['accuracy']:.1%}  (chance "
                     f"{p['chance']:.1%})")
    r = m["retrieval"]
    lines.append(f"  retrieval over {r['pool']} pairs: image->text R@1 "
                 f"{r['image_to_text']['recall@1']:.1%} R@5 {r['image_to_text']['recall@5']:.1%};"
                 f" text->image R@1 {r['text_to_image']['recall@1']:.1%} R@5 "
                 f"{r['text_to_image']['recall@5']:.1%}")
    return "[lmlab] clip results:\n" + "\n".join(lines)
