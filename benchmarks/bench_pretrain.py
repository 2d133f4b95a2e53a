"""Pretraining throughput: `lmlab pretrain` vs a plain nanoGPT-style PyTorch loop, same model.

Both sides train GPT-2 (learned positions; nanoGPT's model) of the same shape on the same
char-level tokens with the same batch; the reference is ``ref_nanogpt.py`` (one file,
torch.compile off). Before timing, the reference is loaded with the lmlab model's initial
weights and both losses on one batch are compared (``same_model``). Tokens/s = input tokens
per second of optimizer steps after ``--warmup`` steps, each side alone under
``/tmp/lmlab-heavy.lock``. lmlab runs in each ``--variants`` setting (fp32 | bf16 autocast |
compile | bf16+compile | auto+compile | compile-blocks | bf16+compile-blocks; ``compile``
compiles the whole forward, ``-blocks`` each decoder block); the reference in fp32 (its CPU
recipe).
Compiling happens in the first step: tokens/s are steady state (after ``--warmup``) and each
variant also reports ``first_step_s`` (the cold compile, with a fresh
``TORCHINDUCTOR_CACHE_DIR``) so the compile cost is read separately.

``--recipe`` instead runs nanoGPT's char-level Shakespeare CPU recipe (4 layers, 4 heads,
128 wide, context 64, batch 12, 2000 iterations, no dropout) through `lmlab pretrain` on the
first 1.1M characters of the `shakespeare` corpus (90/10 split) as the CLI in a fresh process
and reports the val loss and wall time (start-up included); ``--config`` runs any other recipe
file the same way.

    .venv/bin/python benchmarks/bench_pretrain.py --steps 60 --warmup 10
    .venv/bin/python benchmarks/bench_pretrain.py --recipe
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
LOCK = "/tmp/lmlab-heavy.lock"
VARIANTS = {"fp32": [], "bf16": ["dtype=bf16"], "compile": ["compile=true"],
            "bf16+compile": ["dtype=bf16", "compile=true"],
            "auto+compile": ["dtype=auto", "compile=true"],
            "compile-blocks": ["compile=true", "compile_scope=blocks"],
            "bf16+compile-blocks": ["dtype=bf16", "compile=true", "compile_scope=blocks"]}


@contextlib.contextmanager
def heavy_lock(path: str):
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[bench] waiting for {path} (another heavy run holds it)", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def shape_args(a) -> list[str]:
    return [f"preset={a.preset}", f"layers={a.layers}", f"heads={a.heads}", f"width={a.width}",
            f"context={a.context}"]


def bench_lmlab(a, variant: str, out: Path) -> dict:
    from lmlab.config import load_config
    from lmlab.stages import pretrain

    cfg = load_config(pretrain.Config, None, [
        f"data={a.data}", f"data_chars={a.data_chars}", "position=learned", *shape_args(a),
        f"batch_size={a.batch}", f"max_steps={a.steps}", "warmup_steps=0", "eval_every=0",
        "save_every=0", "sample_tokens=0", "progress=false", "log_every=1", "eval_chars=2000",
        f"output_dir={out}", "overwrite=true", "lr=1e-3", *VARIANTS[variant]])
    pretrain.run(cfg)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    timed = rows[a.warmup:]
    secs = sum(r["train/step_s"] for r in timed)
    step_s = secs / len(timed)
    # compile variants compile in the first step: what the warmup steps took beyond steady state
    warm = sum(r["train/step_s"] for r in rows[:a.warmup])
    return {"tokens_per_s": sum(r["train/tokens"] for r in timed) / secs,
            "step_ms": 1000 * step_s, "final_loss": rows[-1]["train/loss"],
            "first_step_s": rows[0]["train/step_s"],
            "warmup_extra_s": warm - step_s * min(a.warmup, len(rows))}


def bench_reference(a, tokens: torch.Tensor, hf_model) -> dict:
    import ref_nanogpt as ref

    c = hf_model.config
    model = ref.GPT(c.vocab_size, c.n_positions, c.n_layer, c.n_head, c.n_embd)
    ref.load_from_hf_gpt2(model, hf_model)
    out = ref.train(model, tokens, block=c.n_positions, batch=a.batch, steps=a.steps, lr=1e-3)
    timed = out["step_s"][a.warmup:]
    return {"tokens_per_s": a.batch * c.n_positions * len(timed) / sum(timed),
            "step_ms": 1000 * sum(timed) / len(timed), "final_loss": out["losses"][-1][1]}


def same_model(tokens: torch.Tensor, hf_model, batch: int) -> dict:
    """Loss of both models with the same weights on one batch (a check, not a timing)."""
    import ref_nanogpt as ref

    c = hf_model.config
    model = ref.GPT(c.vocab_size, c.n_positions, c.n_layer, c.n_head, c.n_embd)
    ref.load_from_hf_gpt2(model, hf_model)
    g = torch.Generator().manual_seed(0)
    x, y = ref.get_batch(tokens, c.n_positions, batch, g)
    with torch.no_grad():
        theirs = float(model(x, y))
        logits = hf_model(input_ids=x, use_cache=False).logits
        ours = float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()))
    n_ref = sum(p.numel() for p in model.parameters())
    n_hf = sum(p.numel() for p in hf_model.parameters())
    return {"loss_lmlab": ours, "loss_reference": theirs, "params_lmlab": n_hf,
            "params_reference": n_ref, "same": abs(ours - theirs) < 1e-4 and n_ref == n_hf}


def initial_model(a):
    """The token stream and the untrained GPT-2 that `lmlab pretrain` builds (same seed)."""
    from lmlab.config import load_config
    from lmlab.stages import pretrain

    cfg = load_config(pretrain.Config, None, [f"data={a.data}", f"data_chars={a.data_chars}",
                                              "position=learned", *shape_args(a)])
    data = pretrain._read_data(cfg)
    tokenizer, model = pretrain._tokenizer_and_model(cfg, data)
    return pretrain._token_streams(tokenizer, data)["train"], model


def cold_compile(a, cache: Path) -> None:
    """Each compile variant compiles from nothing: no code kept from an earlier variant in this
    process, an empty inductor cache (unless ``--warm-cache``)."""
    if not a.warm_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)
    torch._dynamo.reset()


def run_throughput(a) -> dict:
    tokens, hf_model = initial_model(a)
    check = same_model(tokens, hf_model, a.batch)
    print(f"[bench] same model: {check}", flush=True)
    results = {"same_model": check, "lmlab": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for v in a.variants:
            cold_compile(a, Path(tmp) / f"inductor-{v}")
            with heavy_lock(a.lock):
                results["lmlab"][v] = bench_lmlab(a, v, Path(tmp) / v)
            print(f"[bench] lmlab {v}: {results['lmlab'][v]}", flush=True)
    with heavy_lock(a.lock):
        results["reference"] = bench_reference(a, tokens, hf_model)
    print(f"[bench] reference: {results['reference']}", flush=True)
    ref_tps = results["reference"]["tokens_per_s"]
    results["speedup"] = {v: r["tokens_per_s"] / ref_tps for v, r in results["lmlab"].items()}
    return results


def run_recipe(a) -> dict:
    """The recipe through the CLI in a fresh process (``python -m lmlab pretrain``), so the
    wall time holds what a user waits for: interpreter start, imports, corpus, tokenizer,
    model, training, the final eval and the save."""
    import subprocess

    config = a.config or str(ROOT / "configs" / "pretrain" / "shakespeare-char.yaml")
    with tempfile.TemporaryDirectory() as tmp, heavy_lock(a.lock):
        cmd = [sys.executable, "-m", "lmlab", "pretrain", "--config", config,
               f"output_dir={tmp}/run", "overwrite=true", "progress=false", *a.set]
        # a recipe with compile=true compiles cold, as a user's first run does
        env = os.environ if a.warm_cache else {**os.environ,
                                               "TORCHINDUCTOR_CACHE_DIR": f"{tmp}/inductor"}
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
        wall = time.perf_counter() - t0
        summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
    return {"config": config, "overrides": a.set, "wall_s": wall, "steps": summary["steps"],
            "train_s": summary["train_seconds"], "outside_training_s": wall -
            summary["train_seconds"], "val": summary["val"],
            "tokens_per_s": summary.get("tokens_per_s")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--preset", default="nano")
    p.add_argument("--layers", type=int, default=0)
    p.add_argument("--heads", type=int, default=0)
    p.add_argument("--width", type=int, default=0)
    p.add_argument("--context", type=int, default=0)
    p.add_argument("--data", default="corpus:shakespeare")
    p.add_argument("--data-chars", type=int, default=1_100_000)
    p.add_argument("--variants", nargs="+", default=["fp32", "bf16"], choices=list(VARIANTS))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--recipe", action="store_true", help="run a recipe for val loss + time")
    p.add_argument("--config", default="", help="--recipe: the recipe file")
    p.add_argument("--set", nargs="*", default=[], help="--recipe: key=value overrides")
    p.add_argument("--warm-cache", action="store_true",
                   help="keep torch's inductor cache (default: every compile starts cold)")
    p.add_argument("--lock", default=LOCK)
    p.add_argument("--out", default="benchmarks/results/pretrain.json")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    results = run_recipe(a) if a.recipe else run_throughput(a)
    env = {"python": sys.version.split()[0], "torch": torch.__version__,
           "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
           "capability": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"args": vars(a), "env": env, "results": results},
                                      indent=2) + "\n")
    if a.recipe:
        v = results["val"]
        print(f"| recipe | steps | wall s | training s | val loss | bits/byte |\n"
              f"|---|---|---|---|---|---|\n"
              f"| {Path(results['config']).name} {' '.join(a.set)} | {results['steps']} | "
              f"{results['wall_s']:.1f} | {results['train_s']:.1f} | {v['loss']:.4f} | "
              f"{v.get('bits_per_byte', 0):.3f} |")
        return
    print("| side | tok/s | ms/step | final loss | vs reference | first step s (compile) |")
    print("|---|---|---|---|---|---|")
    for v, r in results["lmlab"].items():
        print(f"| lmlab {v} | {r['tokens_per_s']:.0f} | {r['step_ms']:.1f} | "
              f"{r['final_loss']:.3f} | {results['speedup'][v]:.2f}x | "
              f"{r['first_step_s']:.1f} |")
    r = results["reference"]
    print(f"| reference (nanoGPT-style) | {r['tokens_per_s']:.0f} | {r['step_ms']:.1f} | "
          f"{r['final_loss']:.3f} | 1.00x | - |")


if __name__ == "__main__":
    main()
