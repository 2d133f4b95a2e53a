"""`lmlab reward`: a reward model = base model + scalar head, trained on preference pairs with
the Bradley-Terry loss.

Setup (pairs, held-out pairs, model + head), then the shared loop with ``RewardObjective``,
then the saved reward model (``final/``, loadable by ``lmlab.models.heads.load_reward_model``)
and the held-out pairwise accuracy, margin and calibration before and after.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmlab.config import opt, row_fields
from lmlab.train.config import CompileOptions, TrainConfig

HELP = "reward model: base model + scalar head trained on preference pairs (Bradley-Terry)"


@dataclass
class Config(CompileOptions, TrainConfig):
    data: str = opt("task:all", "preference pairs: file (.jsonl/.json/.csv/.parquet) with "
                                "{prompt, chosen, rejected}, HF dataset id, or task:<name>[,...] "
                                "(correct answer preferred over a wrong one)")
    method: str = opt("lora", "what to train besides the head", choices=("full", "lora"))
    lora_r: int = opt(16, "LoRA rank", min=1)
    lora_alpha: float = opt(32.0, "LoRA alpha (scale = alpha / r)", min=0.0, min_exclusive=True)
    lora_dropout: float = opt(0.0, "LoRA dropout", min=0.0, max=1.0)
    lora_targets: list[str] = opt([], "module names to adapt (default: attention and MLP "
                                      "projections)")
    margin: float = opt(0.0, "chosen must outscore rejected by this much (Bradley-Terry margin)",
                        min=0.0)
    center_coef: float = opt(0.0, "weight of the (r_chosen + r_rejected)^2 centring term "
                                  "(0 = off; 0.01 is common)", min=0.0)
    mapping: str | dict[str, str] = opt("", "data columns: a preset (hh-rlhf | ultrafeedback) "
                                        "or {field: column}, e.g. mapping.chosen=good",
                                        keys=row_fields("preference"))
    data_limit: int | None = opt(None, "use at most this many training pairs", min=1)
    on_error: str = opt("raise", "bad rows (identical chosen/rejected, empty or missing fields)",
                        choices=("raise", "skip"))
    on_long: str = opt("skip", "pairs longer than max_len (counted in the summary)",
                       choices=("error", "skip"))
    eval_n: int = opt(100, "held-out pairs (task data: the test split; files: the last eval_n "
                           "rows, kept out of training)", min=0)
    eval_batch_size: int = opt(16, "pairs per forward pass when evaluating", min=1)

    def validate(self) -> list[str]:
        if self.lora_targets and self.method != "lora":
            return ["lora_targets: only used with method=lora"]
        return []


class RewardObjective:
    """Bradley-Terry over a batch whose rows are B chosen then B rejected sequences."""

    def __init__(self, margin: float = 0.0, center_coef: float = 0.0):
        self.margin, self.center_coef = margin, center_coef

    def count(self, batch: dict) -> int:
        return batch["input_ids"].shape[0] // 2  # pairs

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        from lmlab.losses.reward import bradley_terry

        scores = model(batch["input_ids"], batch["attention_mask"])  # (2B,)
        chosen, rejected = scores.chunk(2)  # (B,), (B,)
        losses = bradley_terry(chosen, rejected, margin=self.margin, center_coef=self.center_coef)
        with torch.no_grad():
            metrics = {"accuracy": float((chosen > rejected).sum()),
                       "margin": float((chosen - rejected).sum()),
                       "reward_mean": float((chosen + rejected).sum() / 2)}
        return losses.sum(), metrics


# --- data (shared with `lmlab dpo`) ---------------------------------------------------------------


def read_pairs(cfg):
    """The preference rows of ``cfg.data``, validated (read before the run folder is touched,
    so a bad file loses nothing)."""
    from lmlab.data import load_rows

    return load_rows(cfg.data, "preference", mapping=cfg.mapping or None, split="train",
                     limit=cfg.data_limit, on_error=cfg.on_error)


def load_pairs(cfg, tokenizer, rows) -> tuple[list[dict], list[dict], list, dict]:
    """(train examples, held-out examples, held-out prompts, stats) for the preference ``rows``
    that ``read_pairs`` read.

    Held-out pairs: the test split of built-in tasks, else the last ``eval_n`` rows of the
    source. Bad rows raise or are skipped and counted (``on_error``); pairs longer than
    ``max_len`` raise or are skipped and counted (``on_long``); pairs whose chosen and rejected
    encode to the same tokens are refused the same way. Nothing is dropped silently.
    """
    from lmlab.common import print0
    from lmlab.data import load_rows

    stats = {"rows": len(rows) + getattr(rows, "skipped", 0),
             "skipped_invalid": getattr(rows, "skipped", 0)}
    eval_rows: list[dict] = []
    if cfg.eval_n and cfg.data.startswith("task:"):
        eval_rows = load_rows(cfg.data, "preference", split="test", limit=cfg.eval_n)
    elif cfg.eval_n:
        if len(rows) >= 2 * cfg.eval_n:
            rows, eval_rows = rows[:-cfg.eval_n], rows[-cfg.eval_n:]
        else:
            print0(f"[lmlab] only {len(rows)} pairs: no held-out split (needs >= 2 x eval_n="
                   f"{cfg.eval_n}); set eval_n lower to hold some out")
    examples = encode_pairs(tokenizer, rows, cfg.max_len, cfg.on_long, cfg.on_error, stats)
    held = encode_pairs(tokenizer, eval_rows, cfg.max_len, "skip", "skip", {}) if eval_rows else []
    stats.update(pairs=len(examples), eval_pairs=len(held))
    print0(f"[lmlab] data: {stats['pairs']} training pairs, {len(held)} held-out; skipped "
           f"{stats['skipped_invalid']} invalid rows, {stats['skipped_long']} longer than "
           f"max_len={cfg.max_len}, {stats['skipped_identical']} identical after tokenizing")
    prompts = [r["prompt"] for r in (eval_rows or rows)]  # training prompts if none held out
    return examples, held, prompts, stats


def encode_pairs(tokenizer, rows: list[dict], max_len: int, on_long: str, on_error: str,
                 stats: dict) -> list[dict]:
    from lmlab.data import encode_rows
    from lmlab.errors import DataError

    examples, enc = encode_rows(tokenizer, rows, "preference", max_len, on_long=on_long)
    kept = [ex for ex in examples if ex["chosen_input_ids"] != ex["rejected_input_ids"]]
    same = len(examples) - len(kept)
    if same and on_error == "raise":
        raise DataError(f"{same} pair(s) have chosen and rejected replies that tokenize "
                        "identically, so they teach nothing (fix the data or on_error=skip)")
    stats["skipped_long"] = enc["skipped_long"]
    stats["skipped_identical"] = same
    return kept


@torch.no_grad()
def evaluate_pairs(model, examples: list[dict], pad_id: int, batch_size: int) -> dict:
    """Held-out pairwise accuracy, mean margin, Bradley-Terry loss and calibration error."""
    from lmlab.losses.logprobs import collate_pairs
    from lmlab.losses.reward import bradley_terry, calibration_error

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chosen, rejected = [], []
    for i in range(0, len(examples), batch_size):
        batch = collate_pairs(examples[i:i + batch_size], pad_id)
        c, r = model(batch["input_ids"].to(device), batch["attention_mask"].to(device)).chunk(2)
        chosen.append(c.cpu())
        rejected.append(r.cpu())
    model.train(was_training)
    c, r = torch.cat(chosen), torch.cat(rejected)
    return {"eval/accuracy": float((c > r).float().mean()),
            "eval/margin": float((c - r).mean()),
            "eval/loss": float(bradley_terry(c, r).mean()),
            "eval/calibration_error": calibration_error(c, r),
            "eval/pairs": len(c)}


def policy_base(ref: str) -> str:
    """What a LoRA adapter trained on ``ref`` records as its base: an adapter run is its own
    base (loaded merged), anything else is ``base_reference``."""
    from pathlib import Path

    from lmlab.models import base_reference, resolve

    r = resolve(ref)
    return str(Path(r.path).resolve()) if r.kind == "adapter" else base_reference(ref)


# --- the stage ------------------------------------------------------------------------------------


def run(cfg: Config) -> dict:
    from lmlab.common import is_main, print0, rank, world_size
    from lmlab.losses.logprobs import collate_pairs
    from lmlab.models import load_model, load_tokenizer
    from lmlab.models.adapters import add_lora, count_parameters
    from lmlab.models.compiling import compiled_for_training
    from lmlab.models.heads import RewardModel
    from lmlab.stages.setup import start_stage
    from lmlab.train.data import BatchStream
    from lmlab.train.distributed import barrier
    from lmlab.train.logging import build_loggers
    from lmlab.train.loop import train

    rows = read_pairs(cfg)
    ctx = start_stage(cfg, "reward")
    run_, device, dtype = ctx.run, ctx.device, ctx.dtype

    # --- data
    tokenizer = load_tokenizer(cfg.model)
    examples, held, _, stats = load_pairs(cfg, tokenizer, rows)
    pad = tokenizer.pad_token_id
    stream = BatchStream(examples, cfg.batch_size, lambda ex: collate_pairs(ex, pad),
                         seed=cfg.seed, rank=rank(), world=world_size())

    # --- model: the LM (optionally with LoRA) + a fresh scalar head
    lm = load_model(cfg.model, dtype=ctx.weights_dtype, device=device, merge_adapter=True)
    if cfg.method == "lora":
        lm = add_lora(lm, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                      targets=cfg.lora_targets)
    model = RewardModel(lm, tokenizer=tokenizer)
    trainable, total = count_parameters(model)
    print0(f"[lmlab] reward model on {cfg.model}: {total / 1e6:.1f}M parameters, "
           f"{trainable / 1e6:.2f}M trainable ({cfg.method} + head), {dtype}, {device}")

    def evaluate(m) -> dict:
        return evaluate_pairs(m, held, pad, cfg.eval_batch_size)

    before = evaluate(model) if held and is_main() and cfg.resume == "no" else None
    if before:
        print0(f"[lmlab] held-out accuracy before: {before['eval/accuracy']:.1%}")

    loggers = build_loggers(cfg.loggers, str(run_.path), vars(cfg)) if is_main() else []
    with compiled_for_training(model, cfg):  # the eval and save after it run eagerly
        result = train(model, RewardObjective(cfg.margin, cfg.center_coef), stream, cfg, run_,
                       dtype=dtype, loggers=loggers, eval_fn=evaluate if held else None)
    for lg in loggers:
        lg.close()

    summary: dict = {"stage": "reward", "model": cfg.model, "method": cfg.method,
                     "steps": result.step, "train_seconds": round(result.seconds, 1),
                     "trainable_params": trainable, "total_params": total, "data": stats}
    if result.metrics:
        last = result.metrics[-1]
        summary.update(final_loss=last["train/loss"], train_accuracy=last["train/accuracy"])
    if is_main():
        _save_final(model, cfg, run_)
        if held:
            after = evaluate(model)
            summary.update(eval_after=after, eval_accuracy=after["eval/accuracy"])
            if before:
                summary["eval_before"] = before
            print0(f"[lmlab] held-out accuracy after: {after['eval/accuracy']:.1%} "
                   f"(margin {after['eval/margin']:.3f}, calibration error "
                   f"{after['eval/calibration_error']:.3f}, {after['eval/pairs']} pairs)")
        run_.write_json("summary.json", summary)
        print0(f"[lmlab] wrote {run_.path}/ (final/ reward model, metrics.jsonl, summary.json)")
    barrier()
    return summary


def _save_final(model, cfg: Config, run_) -> None:
    from lmlab.models.heads import save_reward_model
    from lmlab.runs import commit_folder

    tmp = run_.path / ".final.tmp"
    base = policy_base(cfg.model) if cfg.method == "lora" else None
    save_reward_model(model, tmp, base=base, stage="reward", method=cfg.method,
                      source_model=cfg.model)
    commit_folder(tmp, run_.final)
