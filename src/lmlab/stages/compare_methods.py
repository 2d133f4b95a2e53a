"""`lmlab compare-methods`: every fine-tuning method on one budget, side by side.

Each method in ``methods`` runs `lmlab sft` with the same data, steps, seed, batch and eval
prompts (its run folder is ``<run>/<method>/``), in its own process by default so that its peak
memory is its own (and a baseline process with no training steps gives what training added);
then one table: trainable parameters, peak memory, s/step, tokens/s,
held-out task accuracy before/after, and the adapter's size on disk (``summary.json``,
``methods.csv``, ``methods.md``; the report draws accuracy against trainable parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmlab.config import opt
from lmlab.models.methods import METHODS
from lmlab.stages import sft

HELP = "run sft with each fine-tuning method on one budget; one table of cost and accuracy"
# qlora needs bitsandbytes (the quant extra): listed only when asked for
DEFAULT_METHODS = [m for m in METHODS if m != "qlora"]
COLUMNS = ["method", "trainable_params", "trainable_pct", "peak_rss_mb", "train_rss_mb",
           "s_per_step",
           "tokens_per_s", "acc_before", "acc_after", "adapter_mb", "final_loss"]


@dataclass
class Config(sft.Config):
    UNUSED = ("method", "merge_on_save")  # every method runs; final/ keeps each adapter alone

    methods: list[str] = opt(list(DEFAULT_METHODS), "methods to compare, in table order "
                             f"(known: {', '.join(METHODS)}; default: all but qlora)")
    method_lr: dict[str, float] = opt({}, "learning rate per method, e.g. method_lr.prompt=0.03 "
                                          "(the others use lr): prompt tuning wants ~100x "
                                          "LoRA's, full fine-tuning ~10x less")
    isolate: bool = opt(True, "run each method in its own process, so its peak memory (RSS) is "
                              "its own; false: in this process (faster for tests; peak memory "
                              "is then cumulative and left out)")
    eval_splits: list[str] = opt(["heldout"], "task eval prompts (default: heldout, phrasings "
                                              "never trained on)")
    eval_n: int = opt(30, "held-out prompts per eval task and split", min=0)

    def validate(self) -> list[str]:
        from lmlab.models.methods import problems as method_problems

        problems = [p for p in super().validate() if not p.startswith("lora_targets")]
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            problems.append(f"methods: unknown {unknown}; known: {', '.join(METHODS)}")
        if not self.methods:
            problems.append("methods: name at least one method")
        bad_lr = {m: v for m, v in self.method_lr.items()
                  if m not in METHODS or not (v > 0 and v < float("inf"))}
        if bad_lr:
            problems.append(f"method_lr: {bad_lr}: each key must be a method (keys of methods "
                            f"not in methods are unused) and each value a positive, finite "
                            f"learning rate")
        if len(set(self.methods)) != len(self.methods):
            problems.append("methods: a method is listed twice")
        for m in self.methods:
            if m in METHODS:
                problems += method_problems(
                    _spec(self, m), merge_on_save=None, packing=self.packing,
                    activation_checkpointing=self.activation_checkpointing,
                    strategy=self.strategy)
        return problems


def _spec(cfg: Config, method: str):
    """The method's keys: the shared ones, with other methods' target lists left out."""
    from dataclasses import replace

    from lmlab.models.methods import LORA_LIKE, spec_from

    spec = replace(spec_from(cfg), method=method)
    if method not in LORA_LIKE:
        spec = replace(spec, lora_targets=[])
    if method != "ia3":
        spec = replace(spec, ia3_targets=[], ia3_feedforward=[])
    return spec


def sft_values(cfg: Config, method: str, out: Path) -> dict:
    """The sft config (a dict, as its config.yaml would hold it) for one method."""
    from dataclasses import asdict, fields

    keys = {f.name for f in fields(sft.Config)}
    values = {k: v for k, v in asdict(cfg).items() if k in keys}
    spec = _spec(cfg, method)
    values.update(method=method, output_dir=str(out), resume="no", overwrite=True,
                  merge_on_save=False, lr=cfg.method_lr.get(method, cfg.lr),
                  lora_targets=spec.lora_targets,
                  ia3_targets=spec.ia3_targets, ia3_feedforward=spec.ia3_feedforward)
    return values


def run(cfg: Config) -> dict:
    from lmlab.common import print0
    from lmlab.runs import prepare_run

    run_ = prepare_run(cfg, "compare-methods")
    base_rss = _baseline_rss(cfg, run_.path) if cfg.isolate else None
    rows = []
    for i, method in enumerate(cfg.methods):
        out = run_.path / method
        done = cfg.resume != "no" and (out / "summary.json").is_file()
        print0(f"[lmlab] compare-methods: {i + 1}/{len(cfg.methods)} {method}"
               f"{' (finished before: kept)' if done else ''}")
        if not done:
            _run_sft(sft_values(cfg, method, out), run_.path / f"{method}.yaml", cfg.isolate)
        rows.append(method_row(out, method, base_rss))
    summary = {"stage": "compare-methods", "model": cfg.model, "data": cfg.data,
               "steps": cfg.max_steps, "seed": cfg.seed, "eval_splits": cfg.eval_splits,
               "lr": {m: cfg.method_lr.get(m, cfg.lr) for m in cfg.methods},
               "memory": MEMORY if cfg.isolate else "not measured (isolate=false)",
               "baseline_rss_mb": base_rss, "methods": rows}
    run_.write_json("summary.json", summary)
    (run_.path / "methods.csv").write_text(to_csv(rows))
    (run_.path / "methods.md").write_text(to_markdown(rows) + "\n")
    print0(to_markdown(rows))
    print0(f"[lmlab] wrote {run_.path}/ (summary.json, methods.csv, methods.md, one sft run "
           f"per method)")
    return summary


MEMORY = ("peak_rss_mb: peak resident memory of the method's own sft process (wait4 ru_maxrss: "
          "model load, eval before/after, training, save); train_rss_mb: that minus the peak of "
          "the same process with max_steps=0 (baseline/), i.e. what the training steps added")


def _baseline_rss(cfg: Config, root: Path) -> float | None:
    """Peak RSS (MB) of an sft process that does everything but train: prompt tuning (a few
    thousand parameters) with max_steps=0, the same evaluation."""
    import json

    out = root / "baseline"
    if cfg.resume != "no" and (out / "rss.json").is_file():
        return json.loads((out / "rss.json").read_text())["peak_rss_mb"]
    values = sft_values(cfg, "prompt", out)
    values.update(max_steps=0, num_virtual_tokens=1)
    return _run_sft(values, root / "baseline.yaml", True, out)


def _run_sft(values: dict, config_file: Path, isolate: bool, out: Path | None = None
             ) -> float | None:
    """Run sft on ``values``; isolated: in a child process, returning its peak RSS in MB (also
    kept in ``<out>/rss.json``)."""
    import json
    import os
    import subprocess
    import sys

    import yaml

    from lmlab.errors import UserError

    out = Path(values["output_dir"]) if out is None else out
    config_file.write_text(yaml.safe_dump(values, sort_keys=False))
    if not isolate:
        from lmlab.config import load_config

        sft.run(load_config(sft.Config, str(config_file), [], stage="sft"))
        return None
    cmd = [sys.executable, "-m", "lmlab", "sft", "--config", str(config_file)]
    child = subprocess.Popen(cmd, env=os.environ.copy())
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not all children's
    child.returncode = rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise UserError(f"compare-methods: `{' '.join(cmd[2:])}` failed (exit {rc}); its "
                        f"output is above; rerun with resume=auto to keep the finished methods")
    # ru_maxrss: kilobytes on Linux, bytes on macOS
    mb = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    (out / "rss.json").write_text(json.dumps({"peak_rss_mb": round(mb, 1)}) + "\n")
    return round(mb, 1)


def method_row(out: Path, method: str, base_rss: float | None = None) -> dict:
    """One table row from a finished sft run folder."""
    import json

    s = json.loads((out / "summary.json").read_text())
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()
               if x.strip()]
    steps = [m for m in metrics if "train/step_s" in m]
    timed = steps[1:] or steps  # the first step pays one-off costs (allocations, kernels)
    rss = json.loads((out / "rss.json").read_text())["peak_rss_mb"] \
        if (out / "rss.json").is_file() and base_rss is not None else None
    return {"method": method, "trainable_params": s["trainable_params"],
            "trainable_pct": 100 * s["trainable_params"] / max(1, s["total_params"]),
            "peak_rss_mb": rss,
            "train_rss_mb": round(rss - base_rss, 1) if rss is not None else None,
            "s_per_step": sum(m["train/step_s"] for m in timed) / max(1, len(timed)),
            "tokens_per_s": s.get("tokens_per_s"),
            "acc_before": _heldout(s.get("task_eval_before")),
            "acc_after": _heldout(s.get("task_eval_after")),
            "adapter_mb": round(weights_bytes(out / "final") / 2**20, 3),
            "final_loss": s.get("final_loss"), "steps": s.get("steps")}


def _heldout(ev: dict | None):
    """The pooled accuracy of the first split measured (heldout by default)."""
    if not ev:
        return None
    split = next(iter(ev.values()))
    return split.get("mean", {}).get("accuracy")


def weights_bytes(folder: Path) -> int:
    """Bytes of the saved weights (safetensors / bin), not the tokenizer or configs."""
    return sum(f.stat().st_size for f in folder.iterdir()
               if f.suffix in (".safetensors", ".bin", ".pt"))


def _cell(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def to_csv(rows: list[dict]) -> str:
    lines = [",".join(COLUMNS)]
    lines += [",".join("" if r.get(c) is None else str(r.get(c)) for c in COLUMNS) for r in rows]
    return "\n".join(lines) + "\n"


def to_markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)
