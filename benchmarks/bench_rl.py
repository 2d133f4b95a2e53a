"""Online-RL speed: rollout tokens/s with our batched KV-cache decode loop vs recomputing the
whole prefix at every token, and the time of one GRPO update step (forward + backward + AdamW
on a minibatch). On demand, not a test; best of ``--repeats`` (the minimum: on a CPU shared
with other jobs the median swings).

    .venv/bin/python benchmarks/bench_rl.py                          # default model, LoRA
    .venv/bin/python benchmarks/bench_rl.py --model tiny:llama --prompts 2 --k 4 --new-tokens 32

The same shapes as the TRL figure quoted in issue 4: 2 prompts x 4 completions x 32 tokens.
Sampling ignores EOS so every row generates exactly ``--new-tokens`` tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def best(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


@torch.no_grad()
def recompute_sample(model, prompts: list[list[int]], k: int, n: int, pad: int,
                     g: torch.Generator) -> list[list[int]]:
    """The no-cache baseline: one full forward over prompt + everything so far per token."""
    from lmlab.infer.decode import left_pad

    ids, mask = left_pad([p for p in prompts for _ in range(k)], pad)
    for _ in range(n):
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos,
                       use_cache=False, logits_to_keep=1).logits[:, -1].float()
        nxt = torch.multinomial(logits.softmax(-1), 1, generator=g)
        ids = torch.cat([ids, nxt], 1)
        mask = torch.cat([mask, torch.ones_like(nxt)], 1)
    return ids[:, -n:].tolist()


def main() -> None:
    from types import SimpleNamespace

    from lmlab.data import encode_prompt
    from lmlab.data.tasks import examples
    from lmlab.infer.sampling import SamplingParams
    from lmlab.models import load_model, load_tokenizer
    from lmlab.models.adapters import add_lora
    from lmlab.rl.rollout import Rollout, sample, score
    from lmlab.rl.value import ActorCritic
    from lmlab.stages import grpo
    from lmlab.train.loop import build_optimizer

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    tok = load_tokenizer(a.model)
    model = add_lora(load_model(a.model), r=16, alpha=32, dropout=0.0, targets=[])
    prompts = [encode_prompt(tok, e["prompt"]) for e in examples("compare", "train", a.prompts)]
    params = SamplingParams(max_new_tokens=a.new_tokens, ignore_eos=True)
    pad, n_tok = tok.pad_token_id, a.prompts * a.k * a.new_tokens
    g = torch.Generator().manual_seed(0)
    t_kv, (resp, finish) = best(lambda: sample(model, prompts, a.k, params, generator=g,
                                               pad_id=pad, eos_ids=[]), a.repeats)
    model.eval()
    t_re, _ = best(lambda: recompute_sample(model, prompts, a.k, a.new_tokens, pad, g), a.repeats)

    cfg = grpo.Config(model=a.model, group_size=a.k, batch_size=a.prompts * a.k, lr=1e-5)
    ac = ActorCritic(model)
    on = SimpleNamespace(cfg=cfg, model=ac, optimizer=build_optimizer(ac, cfg), run=None)
    ro = Rollout([{}] * len(resp), [p for p in prompts for _ in range(a.k)], resp, finish)
    t_score, _ = best(lambda: score(ro, model, pad_id=pad), a.repeats)
    adv = torch.randn(len(resp))
    t_step, _ = best(lambda: grpo.update(on, ro, adv, 0), a.repeats)
    out = {"model": a.model, "threads": torch.get_num_threads(),
           "shape": f"{a.prompts} prompts x {a.k} completions x {a.new_tokens} tokens",
           "rollout_kv_s": round(t_kv, 2), "rollout_kv_tok_per_s": round(n_tok / t_kv, 1),
           "rollout_recompute_s": round(t_re, 2),
           "rollout_recompute_tok_per_s": round(n_tok / t_re, 1),
           "kv_speedup": round(t_re / t_kv, 2), "score_s": round(t_score, 2),
           "update_step_s": round(t_step, 2),
           "update_total_s": round(t_kv + t_score + t_step, 2)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
