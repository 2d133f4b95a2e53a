"""Distillation glue for the shared loop: the objective, the teacher's top-k cache, and
on-policy (GKD) rollouts where the student writes the completion and the teacher scores it.

Legend: B rows, T time, K trained positions shared by the batch, k cached teacher entries,
V vocabulary.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from lmlab.losses.distill import hard_ce, mix_with_ce, soft_loss, topk_forward_kl
from lmlab.losses.lm import IGNORE
from lmlab.losses.objectives import trained_positions

MODEL_KEYS = ("input_ids", "attention_mask", "position_ids")


@dataclass
class DistillParams:
    loss: str = "forward_kl"  # forward_kl | reverse_kl | jsd
    temperature: float = 1.0
    beta: float = 0.5  # jsd only
    alpha_ce: float = 0.0  # weight of hard-label cross-entropy
    on_policy: float = 0.0  # fraction of micro-batches whose completion the student samples
    gen_temperature: float = 1.0
    gen_max_new_tokens: int = 32
    seed: int = 0


def _inputs(batch: dict) -> dict:
    return {k: batch[k] for k in MODEL_KEYS if k in batch}


def _trained_rows(example: dict) -> list[int]:
    """Positions t of one example whose next token is trained (label t+1 != -100)."""
    labels = example["labels"]
    return [t for t in range(len(labels) - 1) if labels[t + 1] != IGNORE]


class DistillObjective:
    """(1 - alpha) x soft(student || teacher) + alpha x CE on the trained tokens.

    The teacher's logits come from the batch (``teacher_ids`` / ``teacher_logits``, the top-k
    cache) or from a no-grad teacher forward. With ``on_policy > 0`` a micro-batch is chosen
    for a student rollout by a hash of its token ids (stateless, so resume replays it); the
    rollout happens in ``count`` (the loop counts every micro-batch before the first forward),
    replacing the completion in place.
    """

    def __init__(self, teacher, params: DistillParams, *, student=None, tokenizer=None):
        self.teacher, self.p = teacher, params
        self.student, self.tokenizer = student, tokenizer
        self.rollouts = 0

    def count(self, batch: dict) -> int:
        if self.p.on_policy > 0 and "prompt_lens" in batch and self._on_policy(batch):
            rollout_(batch, self.student, self.tokenizer, self.p)
            self.rollouts += 1
        return int((batch["labels"][:, 1:] != IGNORE).sum())

    def _on_policy(self, batch: dict) -> bool:
        h = _hash(batch["input_ids"], self.p.seed)
        return (h % 10_000) / 10_000 < self.p.on_policy

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        labels = batch["labels"]
        idx = batch.get("teacher_pos")
        if idx is None:
            idx = trained_positions(labels)  # (K,)
        targets = labels[:, idx + 1]  # (B, K)
        mask = targets != IGNORE
        s = model(**_inputs(batch), use_cache=False, logits_to_keep=idx).logits  # (B, K, V)
        if "teacher_ids" in batch:
            soft = topk_forward_kl(s, batch["teacher_ids"], batch["teacher_logits"].float(),
                                   temperature=self.p.temperature, mask=mask)
        else:
            with torch.no_grad():
                t = self.teacher(**_inputs(batch), use_cache=False, logits_to_keep=idx).logits
            soft = soft_loss(self.p.loss, s, t, temperature=self.p.temperature,
                             beta=self.p.beta, mask=mask)
        if self.p.alpha_ce > 0:
            loss, ce = mix_with_ce(soft, s, targets, alpha=self.p.alpha_ce)
        else:  # CE still logged: how well the student predicts the data's tokens
            loss = soft
            with torch.no_grad():
                ce = hard_ce(s, targets)
        return loss, {"distill": float(soft.detach()), "ce": float(ce.detach())}


def _hash(ids: torch.Tensor, seed: int) -> int:
    return zlib.crc32(ids.cpu().numpy().tobytes(), seed & 0xFFFFFFFF)


# ----------------------------------------------------------------------------- on-policy


@torch.no_grad()
def rollout_(batch: dict, student, tokenizer, p: DistillParams) -> None:
    """Replace each row's completion by one the student samples from its prompt (in place)."""
    from lmlab.data.collate import collate
    from lmlab.infer.decode import decode, left_pad
    from lmlab.infer.sampling import SamplingParams

    ids, lens = batch["input_ids"], batch["prompt_lens"].tolist()
    prompts = [ids[i, :n].tolist() for i, n in enumerate(lens)]
    pad = tokenizer.pad_token_id
    device = ids.device
    x, mask = left_pad(prompts, pad, device)
    g = torch.Generator(device=device).manual_seed(_hash(ids, p.seed + 1))
    params = SamplingParams(temperature=p.gen_temperature, max_new_tokens=p.gen_max_new_tokens)
    was_training = student.training
    student.eval()
    out = decode(student, x, mask, params, tokenizer=tokenizer, generator=g)
    student.train(was_training)
    rows = []
    for prompt, toks in zip(prompts, out.tokens):
        toks = toks or [tokenizer.eos_token_id]
        rows.append({"input_ids": prompt + toks, "labels": [IGNORE] * len(prompt) + toks})
    new = collate(rows, pad)
    for k in ("input_ids", "labels", "attention_mask"):
        batch[k] = new[k].to(device)
    for k in ("teacher_pos", "teacher_ids", "teacher_logits"):
        batch.pop(k, None)


# ----------------------------------------------------------------------------- top-k cache


@torch.no_grad()
def build_topk_cache(teacher, examples: list[dict], *, k: int, pad_id: int, batch_size: int = 8,
                     dtype: torch.dtype = torch.float16) -> tuple[list[dict], dict]:
    """Per example: the teacher's k largest logits and their ids at each trained position,
    ``{"ids": (n, k) int32, "logits": (n, k) dtype}``. Returns (cache, stats)."""
    from lmlab.data.collate import collate

    device = next(teacher.parameters()).device
    t0, out = time.perf_counter(), []
    for s in range(0, len(examples), batch_size):
        chunk = examples[s:s + batch_size]
        batch = collate(chunk, pad_id)
        idx = trained_positions(batch["labels"])  # (K,)
        logits = teacher(**{k_: v.to(device) for k_, v in _inputs(batch).items()},
                         use_cache=False, logits_to_keep=idx).logits.float()  # (B, K, V)
        vals, ids = logits.topk(k, dim=-1)  # (B, K, k)
        where = {int(t): j for j, t in enumerate(idx)}
        for b, ex in enumerate(chunk):
            cols = [where[t] for t in _trained_rows(ex)]
            out.append({"ids": ids[b, cols].to(torch.int32).cpu(),
                        "logits": vals[b, cols].to(dtype).cpu()})
    seconds = time.perf_counter() - t0
    nbytes = sum(c["ids"].numel() * 4 + c["logits"].numel() * c["logits"].element_size()
                 for c in out)
    return out, {"seconds": round(seconds, 2), "bytes": nbytes, "k": k,
                 "positions": sum(len(c["ids"]) for c in out)}


def attach_cache(examples: list[dict], cache: list[dict]) -> list[dict]:
    if len(cache) != len(examples):
        raise ValueError(f"the teacher cache has {len(cache)} entries for {len(examples)} "
                         "examples; delete it to rebuild")
    return [{**ex, "teacher": c} for ex, c in zip(examples, cache)]


def collate_distill(examples: list[dict], pad_id: int) -> dict:
    """``collate`` plus ``prompt_lens`` (for on-policy rollouts) and, when the examples carry
    a teacher cache, ``teacher_pos`` (K,), ``teacher_ids`` (B, K, k), ``teacher_logits``."""
    from lmlab.data.collate import collate

    plain = [{k: v for k, v in ex.items() if k in ("input_ids", "labels", "position_ids")}
             for ex in examples]
    batch = collate(plain, pad_id)
    batch["prompt_lens"] = torch.tensor([_prompt_len(ex) for ex in examples])
    if "teacher" not in examples[0]:
        return batch
    idx = trained_positions(batch["labels"])  # (K,)
    col = {int(t): j for j, t in enumerate(idx)}
    k = examples[0]["teacher"]["ids"].shape[1]
    ids = torch.zeros(len(examples), len(idx), k, dtype=torch.long)
    vals = torch.zeros(len(examples), len(idx), k)
    for b, ex in enumerate(examples):
        for row, t in enumerate(_trained_rows(ex)):
            ids[b, col[t]] = ex["teacher"]["ids"][row].long()
            vals[b, col[t]] = ex["teacher"]["logits"][row].float()
    batch.update(teacher_pos=idx, teacher_ids=ids, teacher_logits=vals)
    return batch


def _prompt_len(ex: dict) -> int:
    """Tokens before the first trained one (the prompt of a single-turn example)."""
    for i, lab in enumerate(ex["labels"]):
        if lab != IGNORE:
            return max(1, i)
    return len(ex["labels"])


def save_cache(path: Path, cache: list[dict], stats: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"cache": cache, "stats": stats}, tmp)
    tmp.replace(path)


def load_cache(path: Path) -> tuple[list[dict], dict]:
    state = torch.load(path, weights_only=False)
    return state["cache"], state["stats"]
