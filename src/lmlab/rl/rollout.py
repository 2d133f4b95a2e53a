"""Rollouts for the online stages: sample k completions per prompt with our KV-cache decode loop,
then score every response token under the policy (and its value head) and the reference.

The layout of a rollout batch (as TRL's): prompts LEFT padded to P, responses RIGHT padded to R,
so response token j of every row sits in column P + j and is predicted by column P + j - 1.
Position ids come from the attention mask, as in ``infer.decode``, so padding changes nothing.

Sampling takes an explicit ``torch.Generator``: the same generator state gives the same
rollout, and saving its state in a checkpoint makes resumed runs draw what an uninterrupted run
would have drawn.

Legend: N sequences (prompt-major: the k completions of prompt p are rows p*k .. p*k+k-1),
P padded prompt width, R padded response width, H hidden size, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lmlab.infer.decode import decode, left_pad
from lmlab.infer.sampling import SamplingParams
from lmlab.losses.logprobs import token_logps
from lmlab.models.compat import with_cache
from lmlab.models.heads import decoder_of


@dataclass
class Rollout:
    """One update's samples; ``rows[i]`` is the data row (prompt, answer, task, ...) of
    sequence i. Tensors are filled by ``score``."""

    rows: list[dict]
    prompt_ids: list[list[int]]
    response_ids: list[list[int]]  # the sampled tokens, including the EOS that ended a row
    finish: list[str]  # "eos" | "length" (| "stop")
    texts: list[str] = field(default_factory=list)  # responses as text, without the EOS
    batch: dict = field(default_factory=dict)  # build_batch(...) tensors
    old_logp: torch.Tensor | None = None  # (N, R) policy log-probs at sampling time
    ref_logp: torch.Tensor | None = None  # (N, R) reference log-probs
    values: torch.Tensor | None = None  # (N, R) value estimates at sampling time
    rewards: torch.Tensor | None = None  # (N,) scalar reward per sequence
    reward_parts: dict[str, list[float]] = field(default_factory=dict)  # per reward function

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def mask(self) -> torch.Tensor:  # (N, R) 1.0 on real response tokens
        return self.batch["response_mask"]


# --- sampling -------------------------------------------------------------------------------------


@torch.no_grad()
def sample(model, prompt_ids: list[list[int]], k: int, params: SamplingParams, *,
           generator: torch.Generator, pad_id: int, eos_ids: list[int] | None = None,
           batch_size: int = 64, decode_weights: str = "fp32"
           ) -> tuple[list[list[int]], list[str]]:
    """k completions per prompt (prompt-major) through ``infer.decode.decode``: one left-padded
    prefill of each distinct prompt, its cache copied to its k rows, then one KV-cached forward
    per token (on a CPU: prefill and steps through the lean step over oneDNN-packed weights,
    LoRA included). ``batch_size`` sequences (whole groups of k) decode together.
    ``decode_weights``: the precision of those packed weights (``lmlab.infer.precision``);
    fp32 by default, because the policy-gradient losses score the samples under the fp32
    policy: samples drawn from rounded weights are slightly off-policy. Returns (response ids,
    finish reasons)."""
    device = next(model.parameters()).device
    per = max(1, batch_size // k)  # prompts per decode batch
    responses: list[list[int]] = []
    reasons: list[str] = []
    for s in range(0, len(prompt_ids), per):
        ids, mask = left_pad(prompt_ids[s:s + per], pad_id, device)
        out = decode(model, ids, mask, params, eos_token_ids=eos_ids, generator=generator,
                     pack=decode_weights if device.type == "cpu" else False, repeat=k)
        responses += out.tokens
        reasons += out.finish_reasons
    return responses, reasons


def build_batch(prompt_ids: list[list[int]], response_ids: list[list[int]], pad_id: int,
                device=None) -> dict:
    """Left-padded prompts + right-padded responses: ``input_ids``, ``attention_mask``,
    ``position_ids`` (N, P + R); ``targets`` (N, R) with -100 at padding; ``response_mask``
    (N, R) float; ``prompt_width`` P."""
    ids, pmask = left_pad(prompt_ids, pad_id)  # (N, P)
    N, P = ids.shape
    R = max(1, max(len(r) for r in response_ids))
    resp = torch.full((N, R), pad_id, dtype=torch.long)
    rmask = torch.zeros((N, R), dtype=torch.long)
    for i, r in enumerate(response_ids):
        resp[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        rmask[i, :len(r)] = 1
    attn = torch.cat([pmask, rmask], dim=1)
    batch = {"input_ids": torch.cat([ids, resp], dim=1), "attention_mask": attn,
             "position_ids": (attn.cumsum(-1) - 1).clamp(min=0),
             "targets": resp.masked_fill(rmask == 0, -100), "response_mask": rmask.float()}
    batch = {k: v.to(device) for k, v in batch.items()}
    batch["prompt_width"] = P
    return batch


# --- scoring --------------------------------------------------------------------------------------


def _lm_head(model):
    base = model.get_base_model() if hasattr(model, "peft_config") else model
    return base.get_output_embeddings()


def shared_prompt_hidden(decoder, batch: dict) -> torch.Tensor | None:
    """The hidden states (N, R, H) that predict the response tokens, with every distinct prompt
    run once: a forward over the U distinct prompts (U, P) fills a KV cache, its rows are
    gathered per sequence (N, P) and the responses (N, R) attend to them. The same function of
    the weights as one forward over (N, P + R) - gradients flow back through the gather into the
    shared prompt keys and values, summed over the sequences that share them - at U * P + N * R
    tokens instead of N * (P + R) (GRPO's k samples per prompt: k times fewer prompt tokens).
    None when no two sequences share a prompt."""
    from transformers import DynamicCache

    P, R = batch["prompt_width"], batch["targets"].shape[1]
    ids, mask, pos = batch["input_ids"], batch["attention_mask"], batch["position_ids"]
    key = ids[:, :P].masked_fill(mask[:, :P] == 0, -1)  # the prompt, padding included
    uniq, inv = torch.unique(key, dim=0, return_inverse=True)
    U, N = len(uniq), len(key)
    if U == N:
        return None
    src = torch.empty(U, dtype=torch.long, device=ids.device)
    src[inv] = torch.arange(N, device=ids.device)  # one sequence per distinct prompt
    cache = DynamicCache(config=decoder.config)
    head = decoder(input_ids=ids[src, :P], attention_mask=mask[src, :P],
                   position_ids=pos[src, :P], **with_cache(decoder, cache),
                   use_cache=True).last_hidden_state  # (U, P, H)
    cache.batch_select_indices(inv)  # (N, ., P, .): differentiable gather
    tail = decoder(input_ids=ids[:, P:], attention_mask=mask, position_ids=pos[:, P:],
                   **with_cache(decoder, cache), use_cache=True).last_hidden_state  # (N, R, H)
    return torch.cat([head[inv, -1:], tail[:, :R - 1]], dim=1)


def response_forward(model, batch: dict, value_head=None, *, with_logits: bool = False,
                     temperature: float = 1.0, share_prompts: bool = True):
    """One body forward over the rollout batch. Returns (log-probs (N, R), values (N, R) or
    None, logits (N, R, V) or None). Only the R response-predicting positions go through the LM
    head and the value head; the value at response position j is V(prompt + tokens < j).
    Logits are divided by the sampling ``temperature``, so the log-probs are those of the
    distribution the tokens were drawn from. ``share_prompts``: sequences with the same prompt
    run it once (``shared_prompt_hidden``; equal up to fp32 rounding)."""
    P, R = batch["prompt_width"], batch["targets"].shape[1]
    decoder = decoder_of(model)
    h = shared_prompt_hidden(decoder, batch) if share_prompts else None
    if h is None:
        hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         position_ids=batch["position_ids"],
                         use_cache=False).last_hidden_state  # (N, P + R, H)
        h = hidden[:, P - 1:P + R - 1]  # (N, R, H)
    logits = _lm_head(model)(h).float()  # (N, R, V)
    if temperature not in (0.0, 1.0):
        logits = logits / temperature
    logp = token_logps(logits, batch["targets"])  # (N, R), 0 at padding
    values = value_head(h) if value_head is not None else None
    return logp, values, logits if with_logits else None


@torch.no_grad()
def reference_logps(model, batch: dict, ref_model=None, temperature: float = 1.0,
                    share_prompts: bool = True) -> torch.Tensor:
    """(N, R) log-probs under the reference: ``ref_model`` (a frozen copy, full fine-tuning) or,
    when None, ``model`` with its LoRA adapters disabled (no second copy in memory)."""
    if ref_model is not None:
        return response_forward(ref_model, batch, temperature=temperature,
                                share_prompts=share_prompts)[0]
    if not hasattr(model, "disable_adapter"):
        raise ValueError("the reference of a fully fine-tuned policy is a frozen copy: pass "
                         "ref_model")
    with model.disable_adapter():
        return response_forward(model, batch, temperature=temperature,
                                share_prompts=share_prompts)[0]


@torch.no_grad()
def score(rollout: Rollout, model, *, value_head=None, ref_model=None, use_reference: bool = True,
          use_policy: bool = True, pad_id: int, chunk: int = 16,
          temperature: float = 1.0, share_prompts: bool = True) -> Rollout:
    """Fill the batch tensors, the policy's log-probs (and values) at sampling time, and the
    reference's log-probs, in chunks of ``chunk`` sequences. ``use_policy=False`` skips the
    policy pass (old_logp stays None): with one optimizer step per rollout the update's own
    forward gives the same log-probs."""
    device = next(model.parameters()).device
    rollout.batch = build_batch(rollout.prompt_ids, rollout.response_ids, pad_id, device)
    was_training = model.training
    model.eval()
    olds, refs, vals = [], [], []
    for s in range(0, len(rollout), chunk):
        sub = slice_batch(rollout.batch, slice(s, s + chunk))
        if use_policy:
            lp, v, _ = response_forward(model, sub, value_head, temperature=temperature,
                                        share_prompts=share_prompts)
            olds.append(lp)
            vals.append(v)
        if use_reference:
            refs.append(reference_logps(model, sub, ref_model, temperature, share_prompts))
    model.train(was_training)
    rollout.old_logp = torch.cat(olds) if use_policy else None
    rollout.ref_logp = torch.cat(refs) if use_reference else None
    rollout.values = torch.cat(vals) if value_head is not None and use_policy else None
    return rollout


def slice_batch(batch: dict, idx) -> dict:
    """Rows ``idx`` (a slice or an index tensor) of a rollout batch."""
    return {k: (v[idx] if torch.is_tensor(v) else v) for k, v in batch.items()}


def rollout_records(rollout: Rollout, update: int, advantages: torch.Tensor | None = None,
                    tokenizer=None) -> list[dict]:
    """One JSON-ready record per sequence, for ``rollouts/update-N.jsonl``."""
    out = []
    for i, row in enumerate(rollout.rows):
        rec = {"update": update, "index": i, "prompt": row.get("prompt"),
               "response": rollout.texts[i] if rollout.texts else None,
               "response_tokens": len(rollout.response_ids[i]), "finish": rollout.finish[i],
               "reward": float(rollout.rewards[i]) if rollout.rewards is not None else None}
        for name, vals in rollout.reward_parts.items():
            rec[f"reward/{name}"] = vals[i]
        for key in ("answer", "task"):
            if key in row:
                rec[key] = row[key]
        if advantages is not None:
            a = advantages[i]
            rec["advantage"] = float(a) if a.dim() == 0 else float(
                (a * rollout.mask[i]).sum() / rollout.mask[i].sum().clamp(min=1))
        out.append(rec)
    return out
