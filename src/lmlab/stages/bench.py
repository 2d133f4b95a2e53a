"""`lmlab bench generate` / `lmlab bench serve`: decoding and serving speed, on any model.

``what=generate``:
setup (model, prompts), then for each (strategy, batch size): one untimed warm-up call and
``repeats`` timed calls of the same code ``lmlab generate`` runs, each producing exactly
``max_new_tokens`` per prompt (EOS ignored, so strategies are compared on equal work). Time to
first token is measured where a strategy streams (greedy, sample). Speculative rows also give
the speed-up over greedy at the same batch size and the acceptance rate. Then, unless
``quality=0``, each strategy decodes the first ``quality`` prompts once more as ``lmlab generate``
would (EOS respected), untimed, for what it does to the text: accuracy on task prompts,
distinct-2, mean length (``quality_samples.jsonl`` holds the completions).

``what=serve``: concurrent streaming clients (``clients``, e.g. 1/4/16/64) against `lmlab serve`,
each reply exactly ``max_new_tokens`` tokens, vs sequential HF ``generate`` and `transformers
serve` (``peers``); aggregate tokens/s, time to first token and latency p50/p99 per level. The
measuring code is ``lmlab.serve.bench`` (also behind ``benchmarks/bench_serve.py``).

Keys that belong to the other ``what`` are refused when set to anything but their default.
Both write ``bench.json`` (rows), ``bench.md`` (the table) and ``summary.json`` (headline
numbers) into the run folder.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass

import torch

from lmlab.config import RunConfig, opt
from lmlab.serve.bench import PEERS
from lmlab.stages.generate import STRATEGIES

HELP = ("measure speed: `lmlab bench generate` (tok/s, first token per strategy) | "
        "`lmlab bench serve` (concurrent clients vs HF, transformers serve)")
POSITIONAL = "what"  # `lmlab bench generate` == `lmlab bench what=generate`

STREAMING = ("greedy", "sample")


@dataclass
class Config(RunConfig):
    UNUSED = ("max_steps",)  # no optimizer steps here
    what: str = opt("generate", "what to measure: generate (decoding strategies) | serve "
                                "(lmlab serve under concurrent clients)",
                    choices=("generate", "serve"))
    data: str = opt("task:add", "prompts: task:<name>[,<name>] (test split), a .jsonl or .txt "
                                "file (as in lmlab generate); cycled when a batch needs more")
    strategies: list[str] = opt(list(STRATEGIES), f"strategies to time, from: "
                                                  f"{', '.join(STRATEGIES)}")
    batch_sizes: list[int] = opt([1, 4], "prompts decoded together")
    max_new_tokens: int = opt(32, "tokens generated per prompt / per reply (EOS ignored)",
                              min=1)
    repeats: int = opt(3, "timed calls per row (after one warm-up); best and median reported",
                       min=1)
    temperature: float = opt(0.7, "sample / best_of_n temperature", min=0.0,
                             min_exclusive=True)
    num_beams: int = opt(4, "beam: beams per prompt", min=1)
    contrastive_k: int = opt(4, "contrastive: candidates per step", min=1)
    n: int = opt(4, "best_of_n: samples per prompt", min=1)
    reranker: str = opt("length", "best_of_n: length (the longest), task (the task's checker: "
                                  "it sees the answer, so best_of_n's accuracy is pass@n), auto "
                                  "(task for task prompts)", choices=("length", "task", "auto"))
    quality: int = opt(16, "then decode the first N prompts once per strategy with EOS "
                           "respected, untimed: accuracy (task prompts), distinct-2, mean length "
                           "(0 = off)", min=0)
    draft: str = opt("", "speculative: draft model reference (empty = prompt lookup)")
    num_draft_tokens: int = opt(5, "speculative: tokens drafted per step", min=1)
    draft_vocab: int = opt(0, "speculative: the draft scores only the first N token ids plus "
                              "the prompt's (a cheaper LM head; exact either way; 0 = all)",
                           min=0)
    draft_bf16: bool = opt(True, "speculative, with pack_weights: the draft's native steps read "
                                 "bfloat16 copies of its weights (half the bytes; exact either "
                                 "way: only the acceptance rate can move)")
    pack_weights: bool = opt(False, "fp32 on a CPU: decode through oneDNN-packed weight copies "
                                    "(every strategy; first-token times too)")
    decode_weights: str = opt("fp32", "with pack_weights: the precision of the weights decoding "
                                      "reads (see lmlab generate)",
                              choices=("fp32", "bf16", "int8"))
    clients: list[int] = opt([1, 4, 16, 64], "serve: concurrent streaming clients, one level "
                                             "each")
    requests: int = opt(16, "serve: requests per level at least (each client sends "
                            "max(1, requests // clients) one after another)", min=1)
    peers: list[str] = opt(["hf", "transformers-serve"],
                           f"serve: baselines, from: {', '.join(PEERS)} ([] or [none] = none)")
    hf_requests: int = opt(4, "serve: requests of the sequential HF generate baseline", min=1)
    peer_clients: list[int] = opt([1, 16], "serve: levels for transformers serve (slow at high "
                                           "concurrency) and for our matching EOS rows")
    max_batch_size: int = opt(64, "serve: lmlab serve's max_batch_size", min=1)
    server: str = opt("process", "serve: process (each server in its own process, as "
                                 "deployed) | thread (ours in this process: starts fast, shares "
                                 "the GIL with the clients; for tests)",
                      choices=("process", "thread"))
    level_timeout_s: float = opt(240.0, "serve: time limit of one level", min=1)
    threads: int = opt(0, "torch CPU threads, of each server too (0 = torch's default)", min=0)
    device: str = opt("auto", "cpu | cuda | mps | auto")
    dtype: str = opt("auto", "auto (fp32 on CPU) | fp32 | bf16 | fp16")

    def validate(self) -> list[str]:
        problems = [f"{k}: only used by what={w}; leave it out with what={self.what}"
                    for w, keys in ONLY.items() if w != self.what
                    for k in keys if getattr(self, k) != _default(k)]
        if self.what == "generate":
            problems += [f"strategies: unknown '{s}' (known: {', '.join(STRATEGIES)})"
                         for s in self.strategies if s not in STRATEGIES]
            if not self.strategies:
                problems.append("strategies: name at least one")
            if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
                problems.append("batch_sizes: a non-empty list of integers >= 1")
            if self.reranker == "task" and not self.data.startswith("task:") and \
                    "best_of_n" in self.strategies:
                problems.append("reranker: 'task' needs data=task:<name>")
            return problems
        problems += [f"peers: unknown '{p}' (known: {', '.join(PEERS)}, none)"
                     for p in self.peers if p not in (*PEERS, "none")]
        for k in ("clients", "peer_clients"):
            if any(c < 1 for c in getattr(self, k)):
                problems.append(f"{k}: integers >= 1")
        if not self.clients and not self.serve_settings().peers:
            problems.append("clients: name at least one level (or a peer to measure)")
        return problems

    def serve_settings(self):
        """The ``lmlab.serve.bench.Settings`` of ``what=serve``."""
        from lmlab.serve.bench import Settings

        return Settings(model=self.model, levels=list(self.clients), requests=self.requests,
                        max_tokens=self.max_new_tokens, hf_requests=self.hf_requests,
                        peer_levels=list(self.peer_clients),
                        peers=[p for p in self.peers if p != "none"], threads=self.threads,
                        max_batch_size=self.max_batch_size, level_s=self.level_timeout_s,
                        server=self.server, device=self.device, dtype=self.dtype)


# keys only one `what` uses (the rest - model, seed, output_dir, max_new_tokens, threads,
# device, dtype - are shared); validate() refuses them when set for the other one
ONLY = {"generate": ("data", "strategies", "batch_sizes", "repeats", "temperature", "num_beams",
                     "contrastive_k", "n", "reranker", "quality", "draft", "num_draft_tokens",
                     "draft_vocab", "draft_bf16", "pack_weights", "decode_weights"),
        "serve": ("clients", "requests", "peers", "hf_requests", "peer_clients",
                  "max_batch_size", "server", "level_timeout_s")}


def _default(name: str):
    f = next(f for f in dataclasses.fields(Config) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def generate_config(cfg: Config, strategy: str, batch_size: int):
    """The `lmlab generate` config that runs one row of the benchmark."""
    from lmlab.stages import generate

    return generate.Config(
        model=cfg.model, data=cfg.data, seed=cfg.seed, strategy=strategy,
        batch_size=batch_size, max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature, num_beams=cfg.num_beams, contrastive_k=cfg.contrastive_k,
        n=cfg.n, draft=cfg.draft, num_draft_tokens=cfg.num_draft_tokens, reranker=cfg.reranker,
        draft_vocab=cfg.draft_vocab, draft_bf16=cfg.draft_bf16,
        pack_weights=cfg.pack_weights, decode_weights=cfg.decode_weights,
        limit=None,  # every prompt; rows are picked here
        device=cfg.device, dtype=cfg.dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_to_first_token(model, tokenizer, prompts: list, params, pack: bool = False) -> float:
    """Seconds from the call to the first generated token of the batch (prefill + 1 step)."""
    from lmlab.infer.decode import encode_prompts, left_pad, model_device, stream_tokens

    device = model_device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    _sync(device)
    t0 = time.perf_counter()
    ids, mask = left_pad(encode_prompts(tokenizer, prompts), pad, device)
    next(iter(stream_tokens(model, ids, mask, params, tokenizer=tokenizer, pack=pack)))
    _sync(device)
    return time.perf_counter() - t0


def measure(cfg: Config, model, tokenizer, rows: list[dict], strategy: str,
            batch_size: int, draft: tuple | None = None) -> dict:
    """One benchmark row: best/median tok/s over ``cfg.repeats`` timed calls; ``draft``:
    ``generate.load_draft``'s, loaded by the caller (never inside a timing)."""
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
        comps, extra = _decode(gcfg, model, tokenizer, prompts, picked, params, draft=draft)
        _sync(device)
        if i:
            times.append(time.perf_counter() - t0)
    n_tok = sum(len(c.token_ids) for c in comps)
    best, med = min(times), statistics.median(times)
    row = {"strategy": strategy, "batch_size": batch_size, "new_tokens": n_tok,
           "seconds": round(best, 6), "tokens_per_s": round(n_tok / best, 2),
           "tokens_per_s_median": round(n_tok / med, 2), "ttft_ms": None}
    if strategy in STREAMING:
        ttft = [time_to_first_token(model, tokenizer, prompts, params,
                                   cfg.pack_weights and cfg.decode_weights)
                for _ in range(cfg.repeats)]
        row["ttft_ms"] = round(1000 * min(ttft), 1)
    if "speculative" in extra:
        spec = extra["speculative"].as_dict()
        row["acceptance_rate"], row["mean_accepted"] = spec["acceptance_rate"], \
            spec["mean_accepted"]
    return row


def quality(cfg: Config, model, tokenizer, rows: list[dict], strategy: str,
            draft: tuple | None = None) -> tuple[dict, list[dict]]:
    """What ``strategy`` does to the text: one untimed ``lmlab generate`` pass (EOS respected,
    the largest batch size) over the first ``cfg.quality`` prompts. Returns its row (accuracy
    when every prompt is a task prompt, distinct-2, mean new tokens, share ended by EOS or a stop
    string) and its samples (``samples.jsonl``'s lines with the strategy)."""
    from lmlab.eval.diversity import distinct_n
    from lmlab.stages.generate import _as_input, _decode, _sample_row

    gcfg = generate_config(cfg, strategy, max(cfg.batch_sizes))
    picked = rows[:cfg.quality]
    prompts = [_as_input(r["prompt"], gcfg.chat) for r in picked]
    comps, extra = _decode(gcfg, model, tokenizer, prompts, picked, gcfg.sampling(), draft=draft)
    samples = [{"strategy": strategy, **_sample_row(r, c, extra, k)}
               for k, (r, c) in enumerate(zip(picked, comps))]
    d2 = distinct_n([c.token_ids for c in comps], 2)
    row = {"strategy": strategy, "prompts": len(samples),
           "accuracy": (round(sum(s["correct"] for s in samples) / len(samples), 3)
                        if all("correct" in s for s in samples) else None),
           "distinct_2": None if d2 is None else round(d2, 3),
           "mean_new_tokens": round(statistics.mean(s["new_tokens"] for s in samples), 1),
           "ended": round(sum(s["finish_reason"] != "length" for s in samples)
                          / len(samples), 3)}
    return row, samples


def quality_table(rows: list[dict], max_new_tokens: int) -> str:
    head = ("| strategy | prompts | accuracy | distinct-2 | mean new tokens | ended before "
            f"{max_new_tokens} tokens |")
    lines = [head, "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['strategy']} | {r['prompts']} | {_cell(r['accuracy'])} | "
                     f"{_cell(r['distinct_2'])} | {r['mean_new_tokens']} | {r['ended']} |")
    return "\n".join(lines) + "\n"


def _cell(v, fmt: str = "{}") -> str:
    """A markdown table cell: empty for a value that was not measured (None)."""
    return "" if v is None else fmt.format(v)


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
    for r in rows:
        lines.append(f"| {r['strategy']} | {r['batch_size']} | {r['tokens_per_s']} | "
                     f"{r['tokens_per_s_median']} | {_cell(r['ttft_ms'])} | "
                     f"{_cell(r.get('speedup_vs_greedy'), '{}x')} | "
                     f"{_cell(r.get('acceptance_rate'))} |")
    return "\n".join(lines) + "\n"


def environment(device, dtype) -> dict:
    import os
    import platform

    return {"machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
                       f"{torch.get_num_threads()} torch threads",
            "device": str(device) + (f" ({torch.cuda.get_device_name(device)})"
                                     if device.type == "cuda" else ""),
            "dtype": str(dtype).replace("torch.", ""), "torch": torch.__version__}


def run(cfg: Config) -> dict:
    return run_serve(cfg) if cfg.what == "serve" else run_generate(cfg)


def run_generate(cfg: Config) -> dict:
    from lmlab.common import pick_device, pick_dtype, print0, seed_everything
    from lmlab.models import load_model, load_tokenizer, resolve
    from lmlab.runs import prepare_run
    from lmlab.stages.generate import _check_ref, load_draft, load_prompts

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
    print0(f"[lmlab] bench generate: {cfg.model}, {len(cfg.strategies)} "
           f"strateg{'ies' if len(cfg.strategies) > 1 else 'y'} x batch "
           f"{cfg.batch_sizes}, {cfg.max_new_tokens} new tokens, {cfg.repeats} timed repeats")

    draft = (load_draft(generate_config(cfg, "speculative", 1), model)
             if "speculative" in cfg.strategies else None)  # once, before any timing
    results = []
    with torch.inference_mode():
        for b in cfg.batch_sizes:
            for s in cfg.strategies:
                row = measure(cfg, model, tokenizer, rows, s, b, draft)
                results.append(row)
                print0(f"[lmlab]   {s:<12} batch {b}: {row['tokens_per_s']} tok/s"
                       + (f", first token {row['ttft_ms']} ms" if row["ttft_ms"] else ""))
    add_speedups(results)
    env = environment(device, dtype)
    summary = _write_generate(cfg, run_, env, results, [], [])  # kept if the quality pass stops
    if cfg.quality:
        print0(f"[lmlab] quality: the first {min(cfg.quality, len(rows))} prompts once per "
               f"strategy, EOS respected, untimed")
        qrows, qsamples = [], []
        with torch.inference_mode():
            for s in cfg.strategies:
                q, samples = quality(cfg, model, tokenizer, rows, s, draft)
                qrows.append(q)
                qsamples += samples
                print0(f"[lmlab]   {s:<12} " + ", ".join(
                    f"{k} {q[k]}" for k in ("accuracy", "distinct_2", "mean_new_tokens")
                    if q[k] is not None))
        summary = _write_generate(cfg, run_, env, results, qrows, qsamples)
    print0("\n" + (run_.path / "bench.md").read_text())
    print0(f"[lmlab] wrote {run_.path}/ (bench.json, bench.md, summary.json"
           + (", quality_samples.jsonl)" if cfg.quality else ")"))
    return summary


def _write_generate(cfg: Config, run_, env: dict, results: list[dict], qrows: list[dict],
                    qsamples: list[dict]) -> dict:
    """bench.json, bench.md, summary.json (and quality_samples.jsonl) of ``what=generate``."""
    md = table(results)
    if qrows:
        md += (f"\nWhat each strategy does to the text ({qrows[0]['prompts']} prompts of "
               f"{cfg.data}, EOS respected):\n\n" + quality_table(qrows, cfg.max_new_tokens))
        run_.write_jsonl("quality_samples.jsonl", qsamples)
    run_.write_json("bench.json", {"what": "generate", "env": env, "rows": results,
                                   "quality": qrows})
    (run_.path / "bench.md").write_text(md)
    g1 = next((r for r in results if r["strategy"] == "greedy"), None)
    spec = [r for r in results if r["strategy"] == "speculative" and "speedup_vs_greedy" in r]
    summary = {"stage": "bench", "what": "generate", "model": cfg.model, **env,
               "greedy_tokens_per_s": g1["tokens_per_s"] if g1 else None,
               "greedy_ttft_ms": g1["ttft_ms"] if g1 else None,
               "speculative_speedup": spec[0]["speedup_vs_greedy"] if spec else None,
               "rows": len(results)}
    if qrows:
        summary["quality"] = {q["strategy"]: {k: q[k] for k in ("accuracy", "distinct_2")}
                              for q in qrows}
    run_.write_json("summary.json", summary)
    return summary


def serve_summary(cfg: Config, rows: list[dict], env: dict) -> dict:
    """Headline numbers of ``what=serve``: ours per level (EOS ignored), the baselines'."""
    from lmlab.serve.bench import HF_NAME

    ours = [r for r in rows if r["server"] == "lmlab serve" and "error" not in r]
    hf = next((r for r in rows if r["server"] == HF_NAME), None)
    eos = {f"{r['server']}, {r['clients']} clients": r["tok_s"] for r in rows
           if "tok_s" in r and r["server"].endswith("(EOS)")}
    best = max(ours, key=lambda r: r["tok_s"], default=None)
    return {"stage": "bench", "what": "serve", "model": cfg.model, **env,
            "max_new_tokens": cfg.max_new_tokens,
            "tokens_per_s": {str(r["clients"]): r["tok_s"] for r in ours},
            "ttft_p99_s": {str(r["clients"]): r["ttft_p99"] for r in ours},
            "latency_p99_s": {str(r["clients"]): r["latency_p99"] for r in ours},
            "best_tokens_per_s": best["tok_s"] if best else None,
            "best_clients": best["clients"] if best else None,
            "hf_tokens_per_s": hf["tok_s"] if hf else None,
            "best_vs_hf": best.get("vs_hf") if best else None,
            "eos_tokens_per_s": eos,  # replies end at EOS: ours vs transformers serve
            "failed": sum(r.get("failed", 0) for r in rows),
            "errors": sum("error" in r for r in rows), "rows": len(rows)}


def run_serve(cfg: Config) -> dict:
    from lmlab.common import pick_device, pick_dtype, print0, seed_everything
    from lmlab.models import resolve
    from lmlab.runs import prepare_run
    from lmlab.serve.bench import run_all, table
    from lmlab.stages.generate import _check_ref

    _check_ref(cfg.model, resolve)
    settings = cfg.serve_settings()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_ = prepare_run(cfg, "bench")
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    print0(f"[lmlab] bench serve: {cfg.model}, clients {cfg.clients}, >= {cfg.requests} "
           f"requests x {cfg.max_new_tokens} tokens per level, peers "
           f"{settings.peers or 'none'}, servers in a {cfg.server}")
    t0 = time.perf_counter()
    rows = run_all(settings, run_.path / "logs", log=print0)
    env = {**environment(device, pick_dtype(cfg.dtype, device)),
           "server_threads": cfg.threads or "default", "server": cfg.server,
           "total_s": round(time.perf_counter() - t0, 1)}
    md = table(rows)
    run_.write_json("bench.json", {"what": "serve", "env": env, "rows": rows})
    (run_.path / "bench.md").write_text(md)
    summary = serve_summary(cfg, rows, env)
    run_.write_json("summary.json", summary)
    print0("\n" + md)
    logs = ", logs/" if (run_.path / "logs").exists() else ""
    print0(f"[lmlab] wrote {run_.path}/ (bench.json, bench.md, summary.json{logs})")
    return summary
