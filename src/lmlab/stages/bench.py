"""`lmlab bench generate`: decoding speed per strategy and batch size, on any model.

Setup (model, prompts), then for each (strategy, batch size): one untimed warm-up call and
``repeats`` timed calls of the same code ``lmlab generate`` runs, each producing exactly
``max_new_tokens`` per prompt (EOS ignored, so strategies are compared on equal work). Time to
first token is measured where a strategy streams (greedy, sample). Speculative rows also give
the speed-up over greedy at the same batch size and the acceptance rate. Writes ``bench.json``
(rows), ``bench.md`` (the table) and ``summary.json`` (headline numbers) into the run folder.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass

import torch

from lmlab.config import RunConfig, opt
from lmlab.stages.generate import STRATEGIES

HELP = "measure speed: `lmlab bench generate` = tok/s and time to first token per strategy"
POSITIONAL = "what"  # `lmlab bench generate` == `lmlab bench what=generate`

STREAMING = ("greedy", "sample")


@dataclass
class Config(RunConfig):
    what: str = opt("generate", "what to measure", choices=("generate",))
    data: str = opt("task:add", "prompts: task:<name>[,<name>] (test split), a .jsonl or .txt "
                                "file (as in lmlab generate); cycled when a batch needs more")
    strategies: list[str] = opt(list(STRATEGIES), f"strategies to time, from: "
                                                  f"{', '.join(STRATEGIES)}")
    batch_sizes: list[int] = opt([1, 4], "prompts decoded together")
    max_new_tokens: int = opt(32, "tokens generated per prompt (EOS ignored)", min=1)
    repeats: int = opt(3, "timed calls per row (after one warm-up); best and median reported",
                       min=1)
    temperature: float = opt(0.7, "sample / best_of_n temperature", min=0.0,
                             min_exclusive=True)
    num_beams: int = opt(4, "beam: beams per prompt", min=1)
    contrastive_k: int = opt(4, "contrastive: candidates per step", min=1)
    n: int = opt(4, "best_of_n: samples per prompt", min=1)
    draft: str = opt("", "speculative: draft model reference (empty = prompt lookup)")
    num_draft_tokens: int = opt(5, "speculative: tokens drafted per step", min=1)
    threads: int = opt(0, "torch CPU threads (0 = torch's default)", min=0)
    device: str = opt("auto", "cpu | cuda | mps | auto")
    dtype: str = opt("auto", "auto (fp32 on CPU) | fp32 | bf16 | fp16")

    def validate(self) -> list[str]:
        problems = [f"strategies: unknown '{s}' (known: {', '.join(STRATEGIES)})"
                    for s in self.strategies if s not in STRATEGIES]
        if not self.strategies:
            problems.append("strategies: name at least one")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            problems.append("batch_sizes: a non-empty list of integers >= 1")
        return problems


def generate_config(cfg: Config, strategy: str, batch_size: int):
    """The `lmlab generate` config that runs one row of the benchmark."""
    from lmlab.stages import generate

    return generate.Config(
        model=cfg.model, data=cfg.data, seed=cfg.seed, strategy=strategy,
        batch_size=batch_size, max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature, num_beams=cfg.num_beams, contrastive_k=cfg.contrastive_k,
        n=cfg.n, draft=cfg.draft, num_draft_tokens=cfg.num_draft_tokens, reranker="length",
        device=cfg.device, dtype=cfg.dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_to_first_token(model, tokenizer, prompts: list, params) -> float:
    """Seconds from the call to the first generated token of the batch (prefill + 1 step)."""
    from lmlab.infer.decode import encode_prompts, left_pad, model_device, stream_tokens

    device = model_device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    _sync(device)
    t0 = time.perf_counter()
    ids, mask = left_pad(encode_prompts(tokenizer, prompts), pad, device)
    next(iter(stream_tokens(model, ids, mask, params, tokenizer=tokenizer)))
    _sync(device)
    return time.perf_counter() - t0


def measure(cfg: Config, model, tokenizer, rows: list[dict], strategy: str,
            batch_size: int) -> dict:
    """One benchmark row: best/median tok/s over ``cfg.repeats`` timed calls."""
    from lmlab.infer.decode import model_device
    from lmlab.stages.generate import _as_input, _decode

    gcfg = generate_config(cfg, strategy, batch_size)
    params = dataclasses.replace(gcfg.sampling(), ignore_eos=True)
    picked = [rows[i % len(rows)] for i in range(batch_size)]
    prompts = [_as_input(r["prompt"], gcfg.chat) for r in picked]
    device = model_device(model)
    times, comps, extra = [], [], {}
    for i in range(cfg.repeats + 1):  # the first call warms up (allocations, kernels)
        _sync(device)
        t0 = time.perf_counter()
        comps, extra = _decode(gcfg, model, tokenizer, prompts, picked, params)
        _sync(device)
        if i:
            times.append(time.perf_counter() - t0)
    n_tok = sum(len(c.token_ids) for c in comps)
    best, med = min(times), statistics.median(times)
    row = {"strategy": strategy, "batch_size": batch_size, "new_tokens": n_tok,
           "seconds": round(best, 4), "tokens_per_s": round(n_tok / best, 2),
           "tokens_per_s_median": round(n_tok / med, 2), "ttft_ms": None}
    if strategy in STREAMING:
        ttft = [time_to_first_token(model, tokenizer, prompts, params)
                for _ in range(cfg.repeats)]
        row["ttft_ms"] = round(1000 * min(ttft), 1)
    if "speculative" in extra:
        row["acceptance_rate"] = extra["speculative"]["acceptance_rate"]
        row["mean_accepted"] = extra["speculative"]["mean_accepted"]
    return row


def add_speedups(rows: list[dict]) -> None:
    """``speedup_vs_greedy`` on each non-greedy row that has a greedy row at its batch size."""
    greedy = {r["batch_size"]: r["tokens_per_s"] for r in rows if r["strategy"] == "greedy"}
    for r in rows:
        if r["strategy"] != "greedy" and r["batch_size"] in greedy and greedy[r["batch_size"]]:
            r["speedup_vs_greedy"] = round(r["tokens_per_s"] / greedy[r["batch_size"]], 3)


def table(rows: list[dict]) -> str:
    head = ("| strategy | batch | tok/s (best) | tok/s (median) | first token ms | "
            "vs greedy | acceptance |")
    lines = [head, "|---|---|---|---|---|---|---|"]

    def f(v, fmt="{}"):
        return "" if v is None else fmt.format(v)

    for r in rows:
        lines.append(f"| {r['strategy']} | {r['batch_size']} | {r['tokens_per_s']} | "
                     f"{r['tokens_per_s_median']} | {f(r['ttft_ms'])} | "
                     f"{f(r.get('speedup_vs_greedy'), '{}x')} | {f(r.get('acceptance_rate'))} |")
    return "\n".join(lines) + "\n"


def run(cfg: Config) -> dict:
    import os
    import platform

    from lmlab.common import pick_device, pick_dtype, print0, seed_everything
    from lmlab.models import load_model, load_tokenizer, resolve
    from lmlab.runs import prepare_run
    from lmlab.stages.generate import _check_ref, load_prompts

    for ref in filter(None, (cfg.model, cfg.draft)):
        _check_ref(ref, resolve)
    rows = load_prompts(generate_config(cfg, "greedy", 1))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_ = prepare_run(cfg, "bench")
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    dtype = pick_dtype(cfg.dtype, device)
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, dtype=dtype, device=device).eval()
    print0(f"[lmlab] bench generate: {cfg.model}, {len(cfg.strategies)} strategies x batch "
           f"{cfg.batch_sizes}, {cfg.max_new_tokens} new tokens, {cfg.repeats} timed repeats")

    results = []
    with torch.inference_mode():
        for b in cfg.batch_sizes:
            for s in cfg.strategies:
                row = measure(cfg, model, tokenizer, rows, s, b)
                results.append(row)
                print0(f"[lmlab]   {s:<12} batch {b}: {row['tokens_per_s']} tok/s"
                       + (f", first token {row['ttft_ms']} ms" if row["ttft_ms"] else ""))
    add_speedups(results)
    env = {"machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
                      f"{torch.get_num_threads()} torch threads",
           "device": str(device) + (f" ({torch.cuda.get_device_name(device)})"
                                    if device.type == "cuda" else ""),
           "dtype": str(dtype).replace("torch.", ""), "torch": torch.__version__}
    md = table(results)
    run_.write_json("bench.json", {"what": "generate", "env": env, "rows": results})
    (run_.path / "bench.md").write_text(md)
    g1 = next((r for r in results if r["strategy"] == "greedy"), None)
    spec = [r for r in results if r["strategy"] == "speculative" and "speedup_vs_greedy" in r]
    summary = {"stage": "bench", "what": "generate", "model": cfg.model, **env,
               "greedy_tokens_per_s": g1["tokens_per_s"] if g1 else None,
               "greedy_ttft_ms": g1["ttft_ms"] if g1 else None,
               "speculative_speedup": spec[0]["speedup_vs_greedy"] if spec else None,
               "rows": len(results)}
    run_.write_json("summary.json", summary)
    print0("\n" + md)
    print0(f"[lmlab] wrote {run_.path}/ (bench.json, bench.md, summary.json)")
    return summary
