"""`lmlab dpo`: offline preference optimisation - DPO and its variants cDPO, IPO, SimPO, ORPO
(paired) and KTO (unpaired).

Setup: pairs (or unpaired KTO rows), the policy (full or LoRA) and its reference. With LoRA the
reference is the same model with adapters disabled (no second copy); with full fine-tuning the
reference log-probs are computed once, before training, and cached on the examples. Then the
shared loop with ``PairObjective`` (the loss picked from ``PAIR_LOSSES``) or ``KTOObjective``;
then held-out reward accuracy, the KL to the reference on fixed prompts, task accuracy, and the
final model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from lmlab.config import ROW_FIELDS, opt, row_fields
from lmlab.losses.preference import PAIR_LOSSES
from lmlab.models.compiling import eager
from lmlab.train.config import CompileOptions, TrainConfig

HELP = "preference optimisation: dpo | cdpo | ipo | simpo | orpo | kto (full or LoRA)"

LOSSES = (*PAIR_LOSSES, "kto")


@dataclass
class Config(CompileOptions, TrainConfig):
    data: str = opt("task:all", "preference pairs {prompt, chosen, rejected} (or, with "
                                "data_kind=kto, {prompt, completion, label}): file, HF dataset "
                                "id, or task:<name>[,...]")
    data_kind: str = opt("preference", "row format of data; kto rows need loss=kto (pairs are "
                                       "split into desirable/undesirable rows for kto)",
                         choices=("preference", "kto"))
    loss: str = opt("dpo", "preference loss", choices=LOSSES)
    beta: float | None = opt(None, "inverse temperature (null = the loss's usual value: 0.1; "
                                   "simpo 2.0)", min=0.0, min_exclusive=True)
    label_smoothing: float = opt(0.0, "cdpo: probability a label is flipped", min=0.0, max=0.49)
    simpo_gamma: float = opt(0.5, "simpo: target reward margin", min=0.0)
    desirable_weight: float = opt(1.0, "kto: weight of desirable rows", min=0.0)
    undesirable_weight: float = opt(1.0, "kto: weight of undesirable rows", min=0.0)
    method: str = opt("lora", "what to train", choices=("full", "lora"))
    lora_r: int = opt(16, "LoRA rank", min=1)
    lora_alpha: float = opt(32.0, "LoRA alpha (scale = alpha / r)", min=0.0, min_exclusive=True)
    lora_dropout: float = opt(0.0, "LoRA dropout", min=0.0, max=1.0)
    lora_targets: list[str] = opt([], "module names to adapt (default: attention and MLP "
                                      "projections)")
    merge_on_save: bool = opt(True, "merge LoRA into the base so final/ is a plain model")
    mapping: str | dict[str, str] = opt("", "data columns: a preset (hh-rlhf | ultrafeedback) "
                                        "or {field: column}, e.g. mapping.chosen=good",
                                        keys=row_fields("preference", "kto"))
    data_limit: int | None = opt(None, "use at most this many training rows", min=1)
    on_error: str = opt("raise", "bad rows (identical chosen/rejected, empty or missing fields)",
                        choices=("raise", "skip"))
    on_long: str = opt("skip", "rows longer than max_len (counted in the summary)",
                       choices=("error", "skip"))
    ref_batch_size: int = opt(8, "pairs per forward when caching reference log-probs", min=1)
    group_by_length: bool = opt(True, "batch examples of similar length together (less "
                                      "padding; order still seeded and random)")
    eval_n: int = opt(50, "held-out pairs for reward accuracy (task data: the test split; "
                          "files: the last eval_n rows)", min=0)
    eval_batch_size: int = opt(8, "pairs per forward when evaluating", min=1)
    kl_n: int = opt(16, "fixed held-out prompts for the KL to the reference at the end", min=0)
    kl_max_new_tokens: int = opt(32, "tokens generated per KL prompt (greedy)", min=1)
    eval_tasks: list[str] = opt([], "built-in tasks for held-out accuracy before/after "
                                    "(default: the tasks in data when data is task:...)")
    task_eval_n: int = opt(50, "prompts per eval task and split (in-template, held-out "
                                "template, out-of-range; 0 = off)", min=0)
    eval_splits: list[str] = opt(["test", "heldout", "range"],
                                 "task eval prompts: test (in-template), heldout (phrasings never "
                                 "trained on), range (larger numbers, longer lists)")
    eval_max_new_tokens: int = opt(16, "tokens generated per task prompt", min=1)

    def validate(self) -> list[str]:
        from lmlab.eval.tasks import split_problems

        problems = split_problems(self.eval_splits)
        if self.lora_targets and self.method != "lora":
            problems.append("lora_targets: only used with method=lora")
        if self.data_kind == "kto" and self.loss != "kto":
            problems.append(f"data_kind=kto holds unpaired rows; loss={self.loss} needs pairs "
                            "(use loss=kto or preference data)")
        fits = ROW_FIELDS[self.data_kind]
        wrong = [k for k in self.mapping if k not in fits] if isinstance(self.mapping, dict) else []
        if wrong:
            problems.append(f"mapping: {', '.join(wrong)}: not a field of {self.data_kind} rows "
                            f"({', '.join(fits)})")
        return problems

    def params(self):
        from lmlab.losses.preference import PrefParams

        beta = self.beta if self.beta is not None else PAIR_LOSSES.get(
            self.loss, PAIR_LOSSES["dpo"]).default_beta
        return PrefParams(beta=beta, label_smoothing=self.label_smoothing,
                          simpo_gamma=self.simpo_gamma, desirable_weight=self.desirable_weight,
                          undesirable_weight=self.undesirable_weight)


# --- objectives -----------------------------------------------------------------------------------


class PairObjective:
    """A paired preference loss over a batch of B chosen rows then B rejected rows."""

    def __init__(self, loss, params, reference=None):
        self.loss, self.params = loss, params  # loss: a PAIR_LOSSES entry
        self.reference = reference if loss.needs_reference else None  # (model, batch) -> (2B,)

    def count(self, batch: dict) -> int:
        return batch["input_ids"].shape[0] // 2

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        from lmlab.losses.logprobs import pair_parts, sequence_logps
        from lmlab.losses.preference import PairLogps

        # one forward over the 2B rows, or one per half when that pads much less
        parts = pair_parts(batch)
        outs = [sequence_logps(model, part) for part in parts]
        logps, tokens = torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])  # (2B,)
        ref = torch.cat([self.reference(model, part) for part in parts]) \
            if self.reference else None
        b = self.count(batch)
        lp = PairLogps(logps[:b], logps[b:], tokens[:b], tokens[b:],
                       *((ref[:b], ref[b:]) if ref is not None else ()))
        out = self.loss.fn(lp, self.params)
        c, r = out.chosen_rewards, out.rejected_rewards
        metrics = {"rewards/chosen": c.sum(), "rewards/rejected": r.sum(),
                   "rewards/accuracy": (c > r).sum(), "rewards/margin": (c - r).sum(),
                   "logps/chosen": lp.chosen.detach().sum(),
                   "logps/rejected": lp.rejected.detach().sum()}
        return out.losses.sum(), {k: float(v) for k, v in metrics.items()}


class KTOObjective:
    """KTO over N unpaired rows; each row carries a mismatched (prompt, completion) twin
    (``kl_*`` keys) whose log-ratio estimates the reference point z0."""

    def __init__(self, params, reference, kl_reference):
        self.params, self.reference, self.kl_reference = params, reference, kl_reference

    def count(self, batch: dict) -> int:
        return batch["input_ids"].shape[0]

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        from lmlab.losses.logprobs import sequence_logps, subbatch
        from lmlab.losses.preference import kto, kto_reference_point
        from lmlab.train.distributed import global_mean

        logps, _ = sequence_logps(model, batch)  # (N,)
        with torch.no_grad(), eager(model):  # no gradient: not the compiled step (_eager)
            kl_logps, _ = sequence_logps(model, subbatch(batch, "kl_"))  # (N,)
        # z0 averages the twins of every rank, so 2 ranks x b == 1 rank x 2b (as TRL gathers)
        z0 = kto_reference_point(kl_logps, self.kl_reference(model, batch), mean=global_mean)
        good = batch["desirable"]
        out = kto(logps, self.reference(model, batch), good, z0, self.params)
        signed = torch.where(good, out.rewards, -out.rewards)
        metrics = {"kl": z0 * len(good), "rewards/signed": signed.sum(),
                   "rewards/accuracy": (signed > 0).sum()}
        return out.losses.sum(), {k: float(v) for k, v in metrics.items()}


def collate_kto(examples: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    from lmlab.data import collate

    batch = collate([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples],
                    pad_id)
    kl = collate([{"input_ids": e["kl_input_ids"], "labels": e["kl_labels"]} for e in examples],
                 pad_id)
    batch.update({f"kl_{k}": v for k, v in kl.items()})
    batch["desirable"] = torch.tensor([bool(e["label"]) for e in examples])
    if "ref_logp" in examples[0]:
        batch["ref_logps"] = torch.tensor([e["ref_logp"] for e in examples])
        batch["kl_ref_logps"] = torch.tensor([e["kl_ref_logp"] for e in examples])
    return batch


# --- data -----------------------------------------------------------------------------------------


def read_rows(cfg: Config):
    """The user's rows (kto or preference), validated before the run folder is touched."""
    from lmlab.data import load_rows
    from lmlab.stages.reward import read_pairs

    if cfg.data_kind != "kto":
        return read_pairs(cfg)
    return load_rows(cfg.data, "kto", mapping=cfg.mapping or None, split="train",
                     limit=cfg.data_limit, on_error=cfg.on_error)


def kto_rows(cfg: Config, tokenizer, stats: dict, rows) -> tuple[list[dict], list]:
    """Unpaired ``{prompt, completion, label}`` rows -> (examples, prompts)."""
    from lmlab.data import encode_rows

    stats.update(rows=len(rows) + rows.skipped, skipped_invalid=rows.skipped)
    examples, enc = encode_rows(tokenizer, rows, "kto", cfg.max_len, on_long=cfg.on_long)
    stats.update(skipped_long=enc["skipped_long"], eval_pairs=0)
    return examples, [r["prompt"] for r in rows]


def pairs_to_kto(pairs: list[dict]) -> list[dict]:
    """Each pair -> a desirable row (chosen) and an undesirable row (rejected); all desirable
    rows come first, so rotating by one (``add_kl_twins``) never pairs a prompt with its own
    other reply."""
    return [{"input_ids": e[f"{side}_input_ids"], "labels": e[f"{side}_labels"],
             "label": side == "chosen"} for side in ("chosen", "rejected") for e in pairs]


def _split(example: dict) -> tuple[list[int], list[int], list[int]]:
    first = next(i for i, x in enumerate(example["labels"]) if x != -100)
    ids = example["input_ids"]
    return ids[:first], ids[first:], example["labels"][first:]


def add_kl_twins(examples: list[dict], max_len: int) -> list[dict]:
    """KTO's mismatched twins: prompt i + the completion of row i-1. TRL rotates the same way
    within each batch; we rotate once over the data so that full-FT reference log-probs of the
    twins can be cached."""
    parts = [_split(e) for e in examples]
    for i, e in enumerate(examples):
        prompt = parts[i][0]
        _, comp, comp_labels = parts[i - 1]
        e["kl_input_ids"] = (prompt + comp)[:max_len]
        e["kl_labels"] = ([-100] * len(prompt) + comp_labels)[:max_len]
    return examples


def example_length(example: dict) -> int:
    """The padded width an example needs: its longest sequence (chosen / rejected, or a KTO
    completion and its twin)."""
    return max(len(v) for k, v in example.items() if k.endswith("input_ids"))


# --- references -----------------------------------------------------------------------------------


def _store_pairs(chunk, batch, model):
    from lmlab.losses.logprobs import sequence_logps

    lp = sequence_logps(model, batch)[0].tolist()
    for i, e in enumerate(chunk):
        e["ref_chosen"], e["ref_rejected"] = lp[i], lp[len(chunk) + i]


def _store_kto(chunk, batch, model):
    from lmlab.losses.logprobs import sequence_logps, subbatch

    lp = sequence_logps(model, batch)[0].tolist()
    kl = sequence_logps(model, subbatch(batch, "kl_"))[0].tolist()
    for e, a, b in zip(chunk, lp, kl):
        e["ref_logp"], e["kl_ref_logp"] = a, b


def build_objective(cfg: Config, model, examples: list[dict], held: list[dict], pad: int):
    """(training objective, held-out pair objective) for ``cfg.loss``. Full fine-tuning caches
    the reference log-probs of ``examples`` and ``held`` now, from the untrained ``model``;
    LoRA uses the model with its adapters disabled."""
    from lmlab.losses import logprobs as L

    params = cfg.params()
    kto_ = cfg.loss == "kto"
    if cfg.method == "full" and (kto_ or PAIR_LOSSES[cfg.loss].needs_reference):
        L.precompute(model, examples, partial(collate_kto if kto_ else L.collate_pairs,
                                              pad_id=pad),
                     _store_kto if kto_ else _store_pairs, batch_size=cfg.ref_batch_size)
        L.precompute(model, held, partial(L.collate_pairs, pad_id=pad), _store_pairs,
                     batch_size=cfg.ref_batch_size)
        ref, kl_ref = L.cached_reference("ref_logps"), L.cached_reference("kl_ref_logps")
    else:
        ref = _eager(L.adapter_reference)
        kl_ref = _eager(partial(L.adapter_reference, prefix="kl_"))
    if kto_:  # held-out pairs are scored by the implied reward beta * log pi/pi_ref, as DPO's
        return KTOObjective(params, ref, kl_ref), PairObjective(PAIR_LOSSES["dpo"], params, ref)
    objective = PairObjective(PAIR_LOSSES[cfg.loss], params, ref)
    return objective, objective


def _eager(reference):
    """The LoRA reference (the policy with its adapters off, without gradients) runs
    uncompiled under compile=true: only the trained forward is compiled. Compiled too, it is
    a second set of graphs (dynamo guards on grad mode): a 10-step DPO LoRA run on tiny:llama
    made 6 graphs, where the step alone makes 3 (its first shapes, then the number of trained
    positions and the length made dynamic)."""
    def forward(model, batch: dict) -> torch.Tensor:
        with eager(model):
            return reference(model, batch)
    return forward


@torch.no_grad()
def evaluate_pairs(model, objective: PairObjective, examples: list[dict], pad: int,
                   batch_size: int) -> dict:
    """Held-out loss, reward accuracy and margins (means over pairs)."""
    from lmlab.losses.logprobs import collate_pairs

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    for i in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in
                 collate_pairs(examples[i:i + batch_size], pad).items()}
        loss, metrics = objective(model, batch)
        for k, v in {"loss": float(loss), **metrics}.items():
            sums[k] = sums.get(k, 0.0) + v
    model.train(was_training)
    return {**{f"eval/{k}": v / max(1, len(examples)) for k, v in sums.items()},
            "eval/pairs": len(examples)}


@torch.no_grad()
def reference_kl(model, ref_forward, tokenizer, prompts: list, max_new_tokens: int) -> dict:
    """KL(policy || reference) on the policy's own greedy replies to fixed prompts: exact over
    the vocabulary at each reply token, summed per reply; means over prompts and tokens."""
    from lmlab.data import collate, encode_prompt
    from lmlab.infer.decode import generate
    from lmlab.infer.sampling import SamplingParams
    from lmlab.losses.logprobs import completion_kl

    was_training = model.training
    model.eval()
    chats = [[{"role": "user", "content": p}] if isinstance(p, str) else p for p in prompts]
    outs = generate(model, tokenizer, chats, SamplingParams(temperature=0.0,
                                                            max_new_tokens=max_new_tokens))
    rows, tokens = [], 0
    for chat, out in zip(chats, outs):
        prompt, reply = encode_prompt(tokenizer, chat), list(out.token_ids)
        rows.append({"input_ids": prompt + reply, "labels": [-100] * len(prompt) + reply})
        tokens += len(reply)
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in collate(rows, tokenizer.pad_token_id).items()}
    kl = completion_kl(model, ref_forward, batch)  # (P,)
    model.train(was_training)
    return {"kl/sequence": float(kl.mean()), "kl/token": float(kl.sum()) / max(1, tokens),
            "kl/prompts": len(rows)}


# --- the stage ------------------------------------------------------------------------------------


def _data(cfg: Config, tokenizer, rows) -> tuple[list[dict], list[dict], list, dict]:
    """(training examples, held-out pair examples, fixed KL prompts, stats)."""
    from lmlab.common import print0
    from lmlab.stages.reward import load_pairs

    if cfg.data_kind == "kto":
        stats: dict = {}
        examples, prompts = kto_rows(cfg, tokenizer, stats, rows)
        held: list[dict] = []
    else:
        examples, held, prompts, stats = load_pairs(cfg, tokenizer, rows)
        if cfg.loss == "kto":
            examples = pairs_to_kto(examples)
    if cfg.loss == "kto":
        examples = add_kl_twins(examples, cfg.max_len)
        stats.update(completions=len(examples), desirable=sum(e["label"] for e in examples))
        print0(f"[lmlab] kto: {stats['desirable']} desirable and "
               f"{len(examples) - stats['desirable']} undesirable completions")
    return examples, held, prompts[:cfg.kl_n], stats


def run(cfg: Config) -> dict:
    from lmlab.common import is_main, print0, rank, world_size
    from lmlab.eval.tasks import measure as measure_tasks
    from lmlab.losses.logprobs import collate_pairs
    from lmlab.models import load_model, load_tokenizer
    from lmlab.models.adapters import add_lora, count_parameters
    from lmlab.models.compiling import compiled_for_training
    from lmlab.stages.setup import eval_task_names, start_stage
    from lmlab.train.data import BatchStream
    from lmlab.train.distributed import barrier
    from lmlab.train.logging import build_loggers
    from lmlab.train.loop import train

    rows = read_rows(cfg)  # a bad file fails before the run folder is touched
    ctx = start_stage(cfg, "dpo")
    run_, device, dtype = ctx.run, ctx.device, ctx.dtype

    # --- data
    tokenizer = load_tokenizer(cfg.model)
    pad = tokenizer.pad_token_id
    examples, held, kl_prompts, stats = _data(cfg, tokenizer, rows)

    # --- policy and reference
    model = load_model(cfg.model, dtype=ctx.weights_dtype, device=device, merge_adapter=True)
    if cfg.method == "lora":
        model = add_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                         targets=cfg.lora_targets)
    trainable, total = count_parameters(model)
    params = cfg.params()
    print0(f"[lmlab] {cfg.loss} (beta {params.beta}) on {cfg.model}: {total / 1e6:.1f}M "
           f"parameters, {trainable / 1e6:.2f}M trainable ({cfg.method}), {dtype}, {device}")
    objective, pair_eval = build_objective(cfg, model, examples, held, pad)
    collate = collate_kto if cfg.loss == "kto" else collate_pairs
    stream = BatchStream(examples, cfg.batch_size, lambda ex: collate(ex, pad), seed=cfg.seed,
                         rank=rank(), world=world_size(),
                         lengths=[example_length(e) for e in examples]
                         if cfg.group_by_length else None)

    def evaluate(m) -> dict:
        return evaluate_pairs(m, pair_eval, held, pad, cfg.eval_batch_size)

    tasks = eval_task_names(cfg) if cfg.task_eval_n else []
    measure = is_main() and cfg.resume == "no"
    pairs_before = evaluate(model) if held and measure else None
    tasks_before = measure_tasks(model, tokenizer, tasks, n=cfg.task_eval_n,
                                 max_new_tokens=cfg.eval_max_new_tokens,
                                 splits=cfg.eval_splits) \
        if tasks and measure else None

    loggers = build_loggers(cfg.loggers, str(run_.path), vars(cfg)) if is_main() else []
    with compiled_for_training(model, cfg):  # the evals, KL and save after it run eagerly
        result = train(model, objective, stream, cfg, run_, dtype=dtype, loggers=loggers,
                       eval_fn=evaluate if held else None)
    for lg in loggers:
        lg.close()

    summary: dict = {"stage": "dpo", "model": cfg.model, "loss": cfg.loss, "beta": params.beta,
                     "method": cfg.method, "steps": result.step,
                     "train_seconds": round(result.seconds, 1), "trainable_params": trainable,
                     "total_params": total, "data": stats}
    if result.metrics:
        summary["final_loss"] = result.metrics[-1]["train/loss"]
        summary["train_reward_accuracy"] = result.metrics[-1]["train/rewards/accuracy"]
        summary["steps_per_s"] = len(result.metrics) / max(
            1e-9, sum(m["train/step_s"] for m in result.metrics))
    if is_main():
        _measure_after(cfg, model, tokenizer, held, kl_prompts, tasks, evaluate, summary,
                       pairs_before, tasks_before, ctx.weights_dtype, device)
        _save_final(model, tokenizer, cfg, run_)
        run_.write_json("summary.json", summary)
        print0(f"[lmlab] wrote {run_.path}/ (final/, metrics.jsonl, summary.json)")
    barrier()
    return summary


def _measure_after(cfg, model, tokenizer, held, kl_prompts, tasks, evaluate, summary,
                   pairs_before, tasks_before, weights_dtype, device) -> None:
    from lmlab.common import print0
    from lmlab.eval.tasks import measure as measure_tasks
    from lmlab.eval.tasks import report_tasks
    from lmlab.losses.logprobs import disabled_adapter_forward, model_forward
    from lmlab.models import load_model

    if held:
        summary["eval_after"] = after = evaluate(model)
        print0(f"[lmlab] held-out reward accuracy {after['eval/rewards/accuracy']:.1%}, "
               f"margin {after['eval/rewards/margin']:.3f} ({len(held)} pairs)")
        if pairs_before:
            summary["eval_before"] = pairs_before
    if kl_prompts:
        if cfg.method == "lora":
            ref_forward = disabled_adapter_forward(model)
        else:  # the cached log-probs do not cover fresh replies: reload the reference once,
            # in the policy's weight dtype (fp32 under dtype=auto's autocast), so that it is
            # the policy's starting point
            ref = load_model(cfg.model, dtype=weights_dtype, device=device, merge_adapter=True)
            ref_forward = model_forward(ref.eval())
        summary["kl"] = kl = reference_kl(model, ref_forward, tokenizer, kl_prompts,
                                          cfg.kl_max_new_tokens)
        print0(f"[lmlab] KL(policy || reference) on {kl['kl/prompts']} fixed prompts: "
               f"{kl['kl/sequence']:.4f} per reply, {kl['kl/token']:.5f} per token")
    if tasks:
        after = measure_tasks(model, tokenizer, tasks, n=cfg.task_eval_n,
                              max_new_tokens=cfg.eval_max_new_tokens, splits=cfg.eval_splits)
        # task_accuracy_*: in-template accuracy per task (the keys before held-out splits)
        summary["task_accuracy_after"] = _in_template(after)
        if tasks_before is not None:
            summary["task_accuracy_before"] = _in_template(tasks_before)
        summary.update(report_tasks(tasks_before, after, seed=cfg.seed))


def _in_template(measured: dict) -> dict[str, float]:
    return {t: sum(f) / max(1, len(f)) for t, f in measured["flags"].get("test", {}).items()}


def _save_final(model, tokenizer, cfg: Config, run_) -> None:
    from lmlab.models import write_meta
    from lmlab.runs import commit_folder, temp_folder
    from lmlab.stages.reward import policy_base

    tmp = temp_folder(run_.path)
    merged = cfg.method != "lora" or cfg.merge_on_save
    if cfg.method == "lora" and cfg.merge_on_save:
        model = model.merge_and_unload()
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    meta = {"stage": "dpo", "loss": cfg.loss, "method": cfg.method, "merged": merged}
    if not merged:
        meta["base"] = policy_base(cfg.model)
    write_meta(tmp, **meta)
    commit_folder(tmp, run_.final)
