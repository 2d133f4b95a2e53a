"""`lmlab embed`: contrastive training of a sentence embedder.

Setup (pairs or sentences, the encoder, the held-out collection), then the shared loop with
``ContrastiveObjective`` (InfoNCE with in-batch negatives: sentence-transformers'
MultipleNegativesRankingLoss; or unsupervised SimCSE), then ``final/`` (a folder that
sentence-transformers and transformers load) and the retrieval table: BM25, the encoder
before training and after, on the held-out queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmlab.config import opt
from lmlab.train.config import TrainConfig

HELP = "contrastive sentence embeddings (InfoNCE / MNRL, SimCSE) + retrieval eval vs BM25"
COLLECTIONS = ("chatterbot", "gsm8k")


@dataclass
class Config(TrainConfig):
    model: str = opt("minilm", "encoder: minilm (all-MiniLM-L6-v2, packaged), tiny:bert, an "
                               "encoder folder (e.g. an MLM), a run folder, or org/name")
    data: str = opt("collection:chatterbot", "collection:<chatterbot|gsm8k> (its training "
                    "pairs), a file of {anchor, positive[, negative]} rows (.jsonl/.json/.csv/"
                    ".parquet), or for simcse {text} rows or a .txt file")
    objective: str = opt("mnrl", "mnrl: InfoNCE over pairs, in-batch (+ hard) negatives; "
                                 "simcse: each sentence against itself under another dropout "
                                 "mask", choices=("mnrl", "simcse"))
    scale: float = opt(20.0, "similarity scale = 1 / temperature (20 = tau 0.05)", min=0.0,
                       min_exclusive=True)
    learn_scale: bool = opt(False, "learn the scale (as CLIP learns its temperature), starting "
                                   "at scale, capped at 100")
    pooling: str = opt("auto", "token pooling (auto: the model folder's own, else mean)",
                       choices=("auto", "mean", "cls", "max"))
    lr: float = opt(2e-5, "peak learning rate", min=0.0, min_exclusive=True)
    batch_size: int = opt(32, "pairs per batch: each anchor's negatives are the other "
                              "positives", min=2)
    max_len: int = opt(128, "tokens per text (longer ones are truncated and counted)", min=8)
    group_by_length: bool = opt(False, "batch texts of similar length together (less padding, "
                                       "faster; negatives then share a length range)")
    unpad: bool = opt(True, "BERT-family encoders compute on the batch's real tokens only (the "
                            "same result; false = transformers' padded forward)")
    data_limit: int | None = opt(None, "use at most this many training rows", min=1)
    on_error: str = opt("raise", "bad data rows", choices=("raise", "skip"))
    eval_collection: str = opt("auto", "held-out retrieval eval (auto: the data's collection, "
                                       "none for files)", choices=("auto", "none", *COLLECTIONS))
    eval_batch_size: int = opt(64, "texts per forward pass when evaluating", min=1)

    def eval_name(self) -> str | None:
        if self.eval_collection == "auto":
            name = self.data.split(":", 1)[1] if self.data.startswith("collection:") else None
            return name if name in COLLECTIONS else None
        return None if self.eval_collection == "none" else self.eval_collection


MAX_SCALE = 100.0  # CLIP's cap on its learned logit scale (a temperature of 0.01)


class ContrastiveObjective:
    """InfoNCE over a batch from ``embed.data.collate``: B anchors, then the candidates. The
    scale is fixed, or learned as ``exp(model.log_scale)`` when the encoder has one."""

    def __init__(self, scale: float = 20.0):
        self.scale = scale

    def current_scale(self, model):
        log_scale = getattr(getattr(model, "module", model), "log_scale", None)  # DDP: .module
        if log_scale is None:
            return self.scale
        return log_scale.exp().clamp(max=MAX_SCALE)

    def count(self, batch: dict) -> int:
        return int(batch["anchors"])

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        from lmlab.embed.data import trim
        from lmlab.losses.contrastive import in_batch_accuracy, info_nce

        b, ids, mask = int(batch["anchors"]), batch["input_ids"], batch["attention_mask"]
        if ids.shape[0] == b:  # SimCSE: the same texts twice in one pass, two dropout masks
            emb = model(torch.cat([ids, ids]), torch.cat([mask, mask]))  # (2B, H)
            anchors, candidates = emb[:b], emb[b:]
        else:  # each part at its own padded width (queries are often shorter than documents)
            anchors = model(*trim(ids[:b], mask[:b]))  # (B, H)
            candidates = model(*trim(ids[b:], mask[b:]))  # (N, H)
        scale = self.current_scale(model)
        losses = info_nce(anchors, candidates, scale)  # (B,)
        with torch.no_grad():
            acc = in_batch_accuracy(anchors, candidates).sum()
            used = float(torch.as_tensor(scale).detach())
        return losses.sum(), {"accuracy": float(acc), "scale": used * b}


def run(cfg: Config) -> dict:
    from lmlab.common import is_main, pick_device, pick_dtype, print0, rank, world_size
    from lmlab.common import seed_everything as seed
    from lmlab.embed import data as D
    from lmlab.embed.model import load_encoder, resolve_encoder
    from lmlab.models.adapters import count_parameters
    from lmlab.runs import prepare_run
    from lmlab.train.data import BatchStream
    from lmlab.train.distributed import barrier, init_distributed
    from lmlab.train.logging import build_loggers
    from lmlab.train.loop import train

    resolve_encoder(cfg.model)  # unknown encoders and bad rows fail before the run folder
    rows = D.read_rows(cfg.data, cfg.objective, limit=cfg.data_limit, on_error=cfg.on_error)
    device = pick_device(cfg.device)
    init_distributed(device)
    dtype = pick_dtype(cfg.dtype, device)
    run_ = prepare_run(cfg, "embed")
    seed(cfg.seed)

    model, tokenizer = load_encoder(cfg.model, pooling=cfg.pooling, device=device)
    # fsdp gathers each BertLayer's weights in its forward hook, which unpadded.py's direct
    # calls into the layer's parts would skip
    model.unpad = model.unpad and cfg.unpad and cfg.strategy != "fsdp"
    if cfg.learn_scale:  # a parameter of the encoder, so the optimizer and checkpoints hold it
        import math

        model.log_scale = torch.nn.Parameter(torch.tensor(math.log(cfg.scale), device=device))
    examples, cut = D.encode_rows(tokenizer, rows, cfg.max_len)
    kind = "sentences" if cfg.objective == "simcse" else "pairs"
    print0(f"[lmlab] data: {len(examples)} {kind} from {cfg.data}; {cut} texts cut to "
           f"max_len={cfg.max_len}")
    stream = BatchStream(examples, cfg.batch_size, lambda ex: D.collate(ex, tokenizer.pad_token_id),
                         seed=cfg.seed, rank=rank(), world=world_size(),
                         lengths=D.lengths(examples) if cfg.group_by_length else None,
                         noun=f"training {kind}")
    trainable, total = count_parameters(model)
    print0(f"[lmlab] encoder {cfg.model}: {total / 1e6:.1f}M parameters, pooling="
           f"{model.pooling}, {cfg.objective}, scale={cfg.scale}, batch={stream.batch_size}, "
           f"{device}{', real tokens only (unpad)' if model.unpad else ''}")

    collection = _collection(cfg, rows)
    evaluate = _evaluator(cfg, tokenizer, collection)
    table: dict = {}
    if collection is not None and is_main() and cfg.resume == "no":
        from lmlab.embed.retrieval import evaluate_bm25

        table["bm25"] = evaluate_bm25(collection)
        table["before"] = evaluate(model)
        print0(f"[lmlab] held-out nDCG@10: BM25 {table['bm25']['ndcg@10']:.3f}, "
               f"{cfg.model} before training {table['before']['ndcg@10']:.3f}")

    loggers = build_loggers(cfg.loggers, str(run_.path), vars(cfg)) if is_main() else []
    result = train(model, ContrastiveObjective(cfg.scale), stream, cfg, run_, dtype=dtype,
                   loggers=loggers, make_optimizer=_optimizer, eval_fn=(lambda m: {
                       f"eval/{k}": v for k, v in evaluate(m).items()}) if collection else None)
    for lg in loggers:
        lg.close()

    summary = {"stage": "embed", "model": cfg.model, "objective": cfg.objective,
               "pooling": model.pooling, "scale": cfg.scale, "steps": result.step,
               "train_seconds": round(result.seconds, 1), "trainable_params": trainable,
               "data": {"source": cfg.data, kind: len(examples), "truncated": cut}}
    if cfg.learn_scale:
        summary["learned_scale"] = float(model.log_scale.detach().exp().clamp(max=MAX_SCALE))
    if result.metrics:
        timed = result.metrics[1:] or result.metrics  # the first step pays one-off costs
        summary.update(final_loss=result.metrics[-1]["train/loss"],
                       train_accuracy=result.metrics[-1]["train/accuracy"],
                       pairs_per_s=stream.batch_size * len(timed) * world_size() / max(
                           1e-9, sum(m["train/step_s"] for m in timed)))
    if is_main():
        _save_final(model, tokenizer, cfg, run_)
        if collection is not None:
            table["after"] = evaluate(model)
            summary.update(collection=collection.describe(), retrieval=table,
                           ndcg_after=table["after"]["ndcg@10"])
            print0(_table_text(table, cfg.model))
        run_.write_json("summary.json", summary)
        print0(f"[lmlab] wrote {run_.path}/ (final/ encoder, metrics.jsonl, summary.json)")
    barrier()
    return summary


def _optimizer(model, cfg: Config):
    """The loop's AdamW, fused where torch has the kernel (CPU, CUDA): on MiniLM's 22M
    parameters clipping + the per-tensor loop took ~0.17 s a step on one core, fused ~0.05 s."""
    from lmlab.train.loop import build_optimizer

    device = next(model.parameters()).device
    return build_optimizer(model, cfg, fused=device.type in ("cpu", "cuda"))


def _collection(cfg: Config, rows: list[dict]):
    from lmlab.common import print0
    from lmlab.embed.collections import load_collection

    name = cfg.eval_name()
    if name is None:
        return None
    col = load_collection(name)
    held = set(col.queries.values())
    leaked = sum(r.get("anchor", r.get("text")) in held for r in rows)
    if leaked:
        print0(f"[lmlab] warning: {leaked} training rows are held-out queries of {name}: its "
               "evaluation is not held out for this data")
    print0(f"[lmlab] eval collection {col.describe()}")
    return col


def _evaluator(cfg: Config, tokenizer, collection):
    from lmlab.embed.retrieval import evaluate_dense

    def evaluate(model) -> dict:
        return evaluate_dense(model, tokenizer, collection, batch_size=cfg.eval_batch_size,
                              max_len=cfg.max_len)

    return evaluate


def _table_text(table: dict, model: str) -> str:
    names = {"bm25": "BM25", "before": f"{model} (untrained)", "after": "after lmlab embed"}
    lines = [f"  {'system':<28} nDCG@10  MRR@10  R@1    R@10"]
    for key, m in table.items():
        lines.append(f"  {names[key]:<28} {m['ndcg@10']:.3f}    {m['mrr@10']:.3f}   "
                     f"{m['recall@1']:.3f}  {m['recall@10']:.3f}")
    return "[lmlab] held-out retrieval:\n" + "\n".join(lines)


def _save_final(model, tokenizer, cfg: Config, run_) -> None:
    from lmlab.embed.model import save_encoder
    from lmlab.runs import commit_folder, temp_folder

    tmp = temp_folder(run_.path)
    save_encoder(model, tokenizer, tmp, max_len=cfg.max_len, stage="embed",
                 objective=cfg.objective, source_model=cfg.model)
    commit_folder(tmp, run_.final)
