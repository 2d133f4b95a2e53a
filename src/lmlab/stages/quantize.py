"""`lmlab quantize`: post-training quantization (and pruning, GGUF export), measured.

Setup (fp32 model), optional magnitude pruning, optional GGUF export of the float model, then
one PTQ recipe from ``lmlab.quant.ptq``; ``final/`` is the quantized model (it reloads with
``lmlab.models.load_model``) and ``summary.json`` holds the trade-off numbers: stored weight
bytes and size on disk (vs fp32), perplexity on held-out text, built-in task accuracy, batch-1
decode and prefill tokens/s.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmlab.config import RunConfig, opt
from lmlab.quant.ptq import METHODS

HELP = "post-training quantization (torchao, fbgemm, bitsandbytes), pruning, GGUF export"


@dataclass
class Config(RunConfig):
    UNUSED = ("max_steps",)  # no optimizer steps here
    data: str = opt("task:convert,compare", "held-out task prompts for accuracy: "
                                            "task:<name>[,<name>] (test split)")
    method: str = opt("int8-weight", "quantization method (fp32 = measure the model as it is)",
                      choices=METHODS)
    group_size: int = opt(32, "int4 methods: weights sharing one scale",
                          choices=(32, 64, 128, 256))
    embeddings: bool = opt(True, "also store the embedding table as int8 (integer methods)")
    prune: str = opt("", "magnitude pruning before quantizing",
                     choices=("", "unstructured", "structured"))
    sparsity: float = opt(0.0, "pruning: fraction of weights (unstructured) or MLP channels "
                               "(structured) removed", min=0.0, max=0.95)
    smooth: float = opt(0.0, "SmoothQuant alpha: move activation outliers into the weights "
                             "before quantizing (for int8-activation methods; 0 = off)",
                        min=0.0, max=1.0)
    gguf: str = opt("", "also export the float model as GGUF (f16 | q8_0 | q4_0 | q4_1; for "
                        "llama.cpp) and check it reloads",
                    choices=("", "f16", "q8_0", "q4_0", "q4_1"))
    eval_tasks: list[str] = opt([], "tasks for accuracy (default: the tasks in data)")
    eval_n: int = opt(50, "held-out prompts per task (0 = skip accuracy)", min=0)
    eval_max_new_tokens: int = opt(16, "tokens generated per eval prompt", min=1)
    ppl_text: str = opt("shakespeare", "held-out text for perplexity: shakespeare | FILE.txt "
                                       "| empty (skip)")
    ppl_windows: int = opt(8, "256-token windows scored for perplexity", min=0)
    decode_tokens: int = opt(32, "batch-1 greedy tokens timed for decode speed (0 = skip)",
                             min=0)
    compare_fp32: bool = opt(True, "also measure the fp32 model, for ratios in the summary")
    decode_weights: list[str] = opt([], "also measure the fp32 model as decode_weights=bf16 | "
                                        "int8 decodes it (rounded weights, our decode step)")
    device: str = opt("cpu", "cpu | cuda | auto (bitsandbytes int4 on CUDA needs cuda)")

    def validate(self) -> list[str]:
        problems = []
        if self.prune and not self.sparsity:
            problems.append("sparsity: set a value > 0 with prune")
        if self.sparsity and not self.prune:
            problems.append("prune: choose unstructured or structured to use sparsity")
        for w in self.decode_weights:
            if w not in ("bf16", "int8"):
                problems.append(f"decode_weights: '{w}' is not one of bf16, int8")
        return problems


def run(cfg: Config) -> dict:
    import shutil

    import torch

    from lmlab.common import pick_device, print0, seed_everything
    from lmlab.errors import UserError
    from lmlab.models import load_model, load_tokenizer, resolve
    from lmlab.quant import export, ptq
    from lmlab.quant.measure import measure_all
    from lmlab.quant.prune import prune
    from lmlab.runs import commit_folder, prepare_run, temp_folder
    from lmlab.stages.setup import eval_task_names

    r = resolve(cfg.model)
    recipe = ptq.Recipe(cfg.method, cfg.group_size, cfg.embeddings)
    done = export.quant_meta(r.path).get("method") if r.kind == "folder" else None
    if done and done not in ("fp32",):
        raise UserError(f"{cfg.model} is already quantized ({done}); quantize its float source")
    if cfg.method != "fp32":
        ptq.require("bitsandbytes" if recipe.needs_folder else "torchao")
    if cfg.ppl_text and cfg.ppl_windows:
        from lmlab.quant.measure import heldout_text

        heldout_text(cfg.ppl_text, 0)  # a missing or unreadable text fails before any write
    run_ = prepare_run(cfg, "quantize")
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    tokenizer = load_tokenizer(cfg.model)
    tasks = eval_task_names(cfg)

    def measure(m, label: str, decode_weights: str | None = None) -> tuple[dict, list]:
        print0(f"[lmlab] measuring {label} ...")
        res = measure_all(m, tokenizer, tasks=tasks, eval_n=cfg.eval_n,
                          max_new_tokens=cfg.eval_max_new_tokens, ppl_text=cfg.ppl_text,
                          ppl_windows=cfg.ppl_windows, decode_tokens=cfg.decode_tokens,
                          decode_weights=decode_weights)
        print0(f"[lmlab] {label}: {_fmt(res[0])}")
        return res

    model = load_model(cfg.model, dtype=torch.float32, device=device).eval()
    summary: dict = {"stage": "quantize", "model": cfg.model, **recipe.as_dict(),
                     "smooth": cfg.smooth}
    if cfg.compare_fp32 and cfg.method != "fp32":
        summary["fp32"] = measure(model, "fp32")[0]
    for w in cfg.decode_weights:  # the float model as our decode step reads it, rounded
        summary.setdefault("decode_weights", {})[w] = measure(model, f"decode_weights={w}",
                                                              w)[0]
    if cfg.prune:
        summary["prune"] = prune(model, cfg.prune, cfg.sparsity)
    if cfg.gguf:
        summary["gguf"] = _export_gguf(model, tokenizer, run_, cfg.gguf)
    if cfg.smooth:
        from lmlab.quant import smooth

        stats = smooth.input_absmax(model, smooth.calibration_batches(tokenizer))
        smooth.smooth(model, stats, cfg.smooth)

    tmp = temp_folder(run_.path)
    if recipe.needs_folder:  # bitsandbytes quantizes while loading from a folder
        src = run_.path / ".fp32.tmp"
        model.save_pretrained(src)
        model = ptq.load_bnb(str(src), recipe, device=str(device))
        shutil.rmtree(src, ignore_errors=True)
    else:
        model = ptq.quantize_model(model, recipe)
    export.save_quantized(model, tokenizer, tmp, recipe, stage="quantize", base=cfg.model)
    commit_folder(tmp, run_.final)
    summary["reload_max_abs_diff"] = _reload_diff(model, run_.final, device)

    metrics, samples = measure(model, cfg.method)
    summary.update(metrics)
    summary["disk_bytes"] = export.folder_bytes(run_.final)
    if "fp32" in summary:
        fp = summary["fp32"]
        summary["size_ratio"] = fp["weight_bytes"] / summary["weight_bytes"]
        if "decode_tok_s" in fp:
            summary["decode_speedup"] = summary["decode_tok_s"] / fp["decode_tok_s"]
        if "perplexity" in fp:
            summary["perplexity_change"] = summary["perplexity"] / fp["perplexity"] - 1
    fp = summary.get("fp32", summary if cfg.method == "fp32" else None)
    for row in (summary.get("decode_weights") or {}).values():
        if fp and "perplexity" in fp and "perplexity" in row:
            row["perplexity_change"] = row["perplexity"] / fp["perplexity"] - 1
        if fp and "decode_tok_s" in fp and "decode_tok_s" in row:
            row["decode_speedup"] = row["decode_tok_s"] / fp["decode_tok_s"]
    run_.write_jsonl("samples.jsonl", samples)
    run_.write_json("summary.json", summary)
    print0(f"[lmlab] wrote {run_.path}/ (final/, summary.json, samples.jsonl)")
    return summary


def _reload_diff(model, folder, device) -> float:
    """Max |logit difference| between the in-memory model and final/ reloaded."""
    import torch

    from lmlab.models import load_model

    again = load_model(str(folder), device=device)
    ids = torch.tensor([[1, 504, 3458, 314, 260, 1345, 30]], device=device)
    with torch.no_grad():
        a, b = model(input_ids=ids).logits.float(), again(input_ids=ids).logits.float()
    return float((a - b).abs().max())


def _export_gguf(model, tokenizer, run_, ftype: str) -> dict:
    import torch

    from lmlab.quant.export import export_gguf, load_gguf

    path = export_gguf(model, tokenizer, run_.path / f"model.{ftype}.gguf", ftype)
    again, _ = load_gguf(path, tokenizer=False)
    ids = torch.tensor([[1, 504, 3458, 314, 260, 1345, 30]])
    with torch.no_grad():
        ref, out = model.cpu()(input_ids=ids).logits, again(input_ids=ids).logits
    return {"file": path.name, "bytes": path.stat().st_size,
            "reload_rel_error": float((out - ref).norm() / ref.norm())}


def _fmt(m: dict) -> str:
    parts = [f"{m['weight_bytes'] / 2**20:.1f} MiB"]
    if "perplexity" in m:
        parts.append(f"ppl {m['perplexity']:.2f}")
    if "accuracy" in m:
        parts.append(f"accuracy {m['accuracy']:.0%}")
    if "decode_tok_s" in m:
        parts.append(f"decode {m['decode_tok_s']:.1f} tok/s")
    if "prefill_tok_s" in m:
        parts.append(f"prefill {m['prefill_tok_s']:.0f} tok/s")
    return ", ".join(parts)
