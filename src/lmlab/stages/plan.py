"""`lmlab plan`: memory per device and wall time for a training run, before running it.

Pure arithmetic (lmlab/plan.py, formulas in docs/scale.md): parameters, gradients, optimizer
state and activations per device under DDP, FSDP (ZeRO-3), FSDP with CPU offload, each with
and without activation checkpointing, against the device's memory; then tokens/s and the wall
time of a token budget from a measured run, a stated rate, or the device's TFLOP/s x MFU.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmlab.config import opt

HELP = "plan: memory per device (DDP / FSDP / offload / checkpointing) and wall time, on paper"


@dataclass
class Config:
    model: str = opt("smollm2-135m-instruct", "a size preset (tiny, 135m, 1.7b, 7b, 8b, 70b) "
                     "or a model reference (its config is read, no weights)")
    method: str = opt("full", "what trains", choices=("full", "lora", "qlora"))
    lora_r: int = opt(16, "LoRA rank (all attention and MLP projections)", min=1)
    seq_len: int = opt(2048, "tokens per sequence", min=1)
    batch_size: int = opt(1, "micro-batch per device (sequences)", min=1)
    devices: int = opt(8, "devices (GPUs, or CPU ranks)", min=1)
    device_memory: str = opt("h100", "memory per device: a part (t4, l4, a10g, a100-40, "
                             "a100-80, h100, h200, cpu-16) or GiB as a number")
    dtype: str = opt("bf16", "compute dtype (bf16 = fp32 master weights, bf16 compute)",
                     choices=("bf16", "fp32"))
    tokens: float = opt(1e9, "token budget for the wall-time estimate", min=0)
    tokens_per_s: float = opt(0.0, "stated throughput of all devices (0 = from throughput_from "
                              "or tflops x mfu)", min=0)
    throughput_from: str = opt("", "a run folder whose summary.json tokens_per_s is measured "
                               "(per device; scaled by devices)")
    tflops: float = opt(989.0, "peak dense bf16 TFLOP/s per device (H100 SXM: 989)", min=0)
    mfu: float = opt(0.4, "fraction of peak FLOP/s reached", min=0, max=1)
    output_dir: str = opt("", "if set, write plan.json here")

    def validate(self) -> list[str]:
        from lmlab.plan import DEVICES

        try:
            float(self.device_memory)
        except ValueError:
            if self.device_memory not in DEVICES:
                return [(f"device_memory: '{self.device_memory}' is neither a number of GiB "
                         f"nor one of {', '.join(DEVICES)}")]
        return []


def run(cfg: Config) -> dict:
    from lmlab import plan

    shape = plan.shape_for(cfg.model)
    mem_gib = plan.DEVICES.get(cfg.device_memory) or float(cfg.device_memory)
    bf16 = cfg.dtype == "bf16"
    s = plan.Setup(method=cfg.method, lora_r=cfg.lora_r, seq_len=cfg.seq_len,
                   batch=cfg.batch_size, devices=cfg.devices, weight_bytes=4,
                   compute_bytes=2 if bf16 else 4)
    rows = plan.scenarios(shape, s)
    for r in rows:
        r["fits"] = r["total"] <= mem_gib
    rate, source = _rate(cfg, shape, s)
    out = {"stage": "plan", "model": cfg.model, "shape": plan.describe(shape),
           "setup": vars(s) | {"lora_targets": list(s.lora_targets)},
           "device_memory_gib": mem_gib, "rows": rows, "tokens_per_s": rate,
           "tokens_per_s_source": source, "tokens": cfg.tokens,
           "wall_hours": plan.wall_seconds(cfg.tokens, rate) / 3600 if rate else None}
    print(render(out))
    if cfg.output_dir:
        from pathlib import Path

        from lmlab.runs import Run

        run_ = Run(path=Path(cfg.output_dir), stage="plan")
        run_.path.mkdir(parents=True, exist_ok=True)
        run_.write_json("plan.json", out)
    return out


def _rate(cfg: Config, shape, s) -> tuple[float, str]:
    from lmlab import plan

    if cfg.tokens_per_s:
        return cfg.tokens_per_s, "stated"
    if cfg.throughput_from:
        import json
        from pathlib import Path

        from lmlab.errors import UserError

        f = Path(cfg.throughput_from) / "summary.json"
        try:
            per_device = float(json.loads(f.read_text())["tokens_per_s"])
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"throughput_from: {f} holds no tokens_per_s (give a training "
                            f"run's folder, or tokens_per_s=)") from None
        return per_device * s.devices, f"measured in {cfg.throughput_from} x {s.devices}"
    rate = plan.tokens_per_second(shape, s, tflops=cfg.tflops, mfu=cfg.mfu)
    return rate, f"{cfg.devices} x {cfg.tflops:g} TFLOP/s x MFU {cfg.mfu:g}"


def render(p: dict) -> str:
    sh, s = p["shape"], p["setup"]
    title = (f"plan: {p['model']} ({sh['params'] / 1e9:.3g}B parameters, {sh['layers']} "
             f"blocks), method={s['method']}, seq {s['seq_len']} x batch {s['batch']} per "
             f"device, {s['devices']} devices of {p['device_memory_gib']:g} GiB")
    head = ("| strategy | checkpointing | weights | gradients | optimizer | activations | "
            "total GiB/device | fits |")
    lines = [title, head, "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in p["rows"]:
        lines.append(f"| {r['strategy']} | {'yes' if r['checkpointing'] else 'no'} | "
                     f"{r['weights']:.2f} | {r['gradients']:.2f} | {r['optimizer']:.2f} | "
                     f"{r['activations']:.2f} | {r['total']:.2f} | "
                     f"{'yes' if r['fits'] else 'NO'} |")
    if p["tokens_per_s"]:
        lines.append(f"throughput {p['tokens_per_s']:,.0f} tokens/s ({p['tokens_per_s_source']})"
                     f": {p['tokens']:.3g} tokens in {p['wall_hours']:.3g} h")
    return "\n".join(lines)
