"""The training loop shared by every gradient stage.

A stage hands it a model, an ``Objective`` and a ``BatchStream``; the loop owns gradient
accumulation (normalised by the units of the whole optimizer step, across micro-batches and
ranks), AMP, clipping, the lr schedule, periodic eval, checkpoints, resume, NaN detection and
logging. Nothing stage-specific lives here.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from lmlab.common import is_main, print0, world_size
from lmlab.errors import UserError
from lmlab.models.amp_adapters import lora_sums_in_matmul
from lmlab.runs import Run
from lmlab.train.amp_inputs import SharedInputCasts
from lmlab.train.checkpoint import load_checkpoint, save_checkpoint, save_sharded
from lmlab.train.config import TrainConfig
from lmlab.train.data import BatchStream
from lmlab.train.distributed import all_reduce_sum, barrier, wrap_ddp
from lmlab.train.frozen_bf16 import FrozenBf16
from lmlab.train.fsdp import leave_alone, prepare_model, release_model
from lmlab.train.interrupt import StopRequest, TrainingInterrupted
from lmlab.train.killpoints import killpoint
from lmlab.train.logging import MetricLogger, format_duration, step_line
from lmlab.train.schedules import lr_factor
from lmlab.train.slowdown import SlowWatch, hint


class Objective(Protocol):
    """What a stage trains: a summed loss over a micro-batch, normalised by the loop."""

    def count(self, batch: dict) -> int:
        """Units in this micro-batch that the loss sums over (tokens, pairs, ...)."""

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """(summed loss, summed metrics); the loop divides both by the step's unit count."""


class TrainingDiverged(UserError):
    pass


@dataclass
class TrainResult:
    step: int
    metrics: list[dict] = field(default_factory=list)
    resumed_from: int | None = None
    seconds: float = 0.0


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, *,
                    fused: bool = False) -> torch.optim.Optimizer:
    """AdamW, weight decay on matrices only. ``fused``: one kernel per step for all parameters
    (torch's fused AdamW) where every parameter is a plain CPU/CUDA tensor; the default is
    torch's per-parameter loop on CPU. The same update (to rounding); at nanoGPT's char model
    the loop's ~500 small ops were ~9% of a step (lmlab pretrain uses fused)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if not decay and not no_decay:
        raise UserError("the model has no trainable parameters")
    kw = {"fused": True} if fused and _fusable(decay + no_decay) else {}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), **kw)


def _fusable(params: list[torch.Tensor]) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch built without distributed: no sharded parameters either
        DTensor = ()

    return all(p.device.type in ("cpu", "cuda") and not isinstance(p, DTensor)
               and p.dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64)
               for p in params)


def amp_context(device: torch.device, dtype: torch.dtype, weights: torch.dtype | None = None):
    """Autocast where the compute dtype is half and the weights are not: on GPUs for bf16/fp16
    (their weights are fp32 masters); on a CPU for bf16 over fp32 weights (dtype=auto on a CPU
    with fast bf16 matmuls, see common.resolve_precision). An explicit dtype=bf16 on a CPU holds
    the weights in bf16 and needs none."""
    if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
        return torch.autocast("cuda", dtype=dtype)
    if device.type == "cpu" and dtype == torch.bfloat16 and weights == torch.float32:
        return torch.autocast("cpu", dtype=dtype)
    return contextlib.nullcontext()


def cpu_amp_attention(model: torch.nn.Module, enabled: bool):
    """Under CPU bf16 autocast a transformers model attends in fp32 for the block
    (models.amp_attention): torch 2.13's bf16 flash-attention backward on a CPU is the slow
    kernel. SmolLM2-135M's shapes, one thread of the AMX Xeon: forward + backward took 2-2.6x
    the fp32 time alone (101 vs 52 ms a layer at 8 x 128 tokens), 17.5% of an autocast SFT
    step in a profile; with fp32 attention the autocast step went from 1.29x to ~2.0x the
    fp32 step (interleaved, under load). Models without ``sdpa`` attention are left alone."""
    from lmlab.models.amp_attention import fp32_attention

    return fp32_attention(model, enabled=enabled)


class CpuAmpCasts:
    """The casts plain CPU autocast repeats, made once, with its numbers: frozen linear weights
    (and a tied frozen head) as bf16 copies made once per run (train.frozen_bf16), and each
    fp32 activation cast once for all the linear layers that read it (train.amp_inputs).
    ``step()`` wraps one optimizer step's forwards and backwards."""

    def __init__(self, frozen: FrozenBf16 | None, inputs: SharedInputCasts | None):
        self.frozen, self.inputs = frozen, inputs

    @contextlib.contextmanager
    def step(self):
        with (self.frozen.swapped() if self.frozen else contextlib.nullcontext()), \
                (self.inputs.active() if self.inputs else contextlib.nullcontext()):
            yield


def cpu_amp_casts(model: torch.nn.Module) -> CpuAmpCasts:
    """A compiled model (compile=true) gets no input-cast hooks: inductor fuses those
    casts itself, and hooks added and removed at every step would make dynamo recompile."""
    from lmlab.models.compiling import compiled_modules

    inputs = None if compiled_modules(model) else SharedInputCasts(model)
    return CpuAmpCasts(FrozenBf16(model), inputs)


def _weights_dtype(model: torch.nn.Module) -> torch.dtype | None:
    """The dtype of the trained weights (the first trainable floating parameter)."""
    return next((p.dtype for p in model.parameters()
                 if p.requires_grad and p.is_floating_point()), None)


class _Mfu:
    """Model FLOPs of each step over the probe's matmul rate for the dtype the matmuls run in
    (lmlab.train.mfu); the probe is read (or run, once per machine) at the first step with
    tokens."""

    def __init__(self, model, device: torch.device, dtype: torch.dtype, amp: bool):
        from lmlab.train.mfu import FlopCounter

        self.counter = FlopCounter(model)
        self.device, self.compute = device, dtype if amp else (_weights_dtype(model) or dtype)
        self.peak: float | None = None
        self.asked = False

    def flops(self, batch: dict, tokens: int) -> float:
        from lmlab.train.mfu import seq_len_of

        return tokens * self.counter.per_token(seq_len_of(batch))

    def of(self, flops: float, seconds: float, world: int) -> float | None:
        from lmlab.common import matmul_peak
        from lmlab.train.mfu import mfu

        if flops <= 0:
            return None
        if not self.asked:
            self.asked, self.peak = True, matmul_peak(self.device, self.compute)
        # the step's FLOPs x steps per second
        return mfu(flops, 1.0 / seconds, self.peak, world) if seconds > 0 else None


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _useful_tokens(batch: dict) -> int:
    """Non-pad input tokens (the throughput we report)."""
    mask = batch.get("attention_mask")
    if torch.is_tensor(mask) and mask.dim() == 2:
        return int(mask.sum())
    ids = batch.get("input_ids")
    return int(ids.numel()) if torch.is_tensor(ids) else 0


def resume_path(cfg: TrainConfig, run: Run) -> Path | None:
    from lmlab.runs import tidy_checkpoints

    if cfg.resume == "no":
        return None
    if cfg.resume == "auto":
        if is_main():
            tidy_checkpoints(run.checkpoints)  # what a killed save left behind
        barrier()
        return run.latest_checkpoint()
    p = Path(cfg.resume)
    if not p.exists():
        raise UserError(f"resume: {p} does not exist (pass a checkpoint folder such as "
                        f"<run>/checkpoints/step-N, or resume=auto)")
    if not (p / "state.pt").is_file():
        latest = Run(p, "").latest_checkpoint()
        hint = f"; did you mean {latest}?" if latest else ""
        raise UserError(f"resume: {p} is not a checkpoint folder (no state.pt){hint}")
    return p


def _memory_gb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    except Exception:  # noqa: BLE001 - best effort on platforms without resource
        return None


def train(model: torch.nn.Module, objective: Objective, stream: BatchStream, cfg: TrainConfig,
          run: Run, *, dtype: torch.dtype = torch.float32,
          eval_fn: Callable[[torch.nn.Module], dict] | None = None,
          loggers: list[MetricLogger] | None = None, stop_after: int | None = None,
          make_optimizer: Callable | None = None, save_buffers: bool = False) -> TrainResult:
    """Run optimizer steps until ``cfg.max_steps`` (or ``stop_after`` steps, for tests that
    simulate a kill). Returns the last step and the logged metrics. With ``strategy=fsdp`` the
    model is sharded while it trains and plain again when this returns.

    ``make_optimizer(model, cfg)`` replaces the default AdamW (the loop sets each group's lr
    every step; the default is fused under CPU bf16 autocast, where its one pass over the
    weights replaces the per-parameter loop's ~10, and torch's loop otherwise);
    ``save_buffers`` also checkpoints persistent buffers (BatchNorm statistics)."""
    try:
        return _train(model, objective, stream, cfg, run, dtype=dtype, eval_fn=eval_fn,
                      loggers=loggers, stop_after=stop_after, make_optimizer=make_optimizer,
                      save_buffers=save_buffers)
    except BaseException:
        leave_alone()  # a one-rank group joined for fsdp is not left open for the caller
        raise


def _train(model, objective, stream, cfg, run, *, dtype, eval_fn, loggers,
           stop_after, make_optimizer, save_buffers) -> TrainResult:
    device = next(model.parameters()).device
    # fsdp shards before the optimizer is built (it must hold the sharded parameters)
    sharded = prepare_model(model, cfg, device, dtype)
    weights = _weights_dtype(model)
    amp = not isinstance(amp_context(device, dtype, weights), contextlib.nullcontext)
    # bf16 autocast on a CPU (dtype=auto on a fast-bf16 CPU): the fastest variant that keeps
    # fp32 master weights, see cpu_amp_speedups; fp32 and GPU runs are unchanged
    cpu_amp = amp and device.type == "cpu"
    if make_optimizer is None and cpu_amp:
        optimizer = build_optimizer(model, cfg, fused=True)
    else:
        optimizer = (make_optimizer or build_optimizer)(model, cfg)
    result = TrainResult(step=0)
    # fp16 gradients underflow without loss scaling; the scale is state, checkpointed with the rest
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and dtype == torch.float16 \
        else None
    resume = resume_path(cfg, run)
    if resume is not None:
        state = load_checkpoint(resume, model=model, optimizer=optimizer, stream=stream)
        result.step = result.resumed_from = int(state["step"])
        run.rewind_metrics(result.step)
        if scaler is not None and "scaler" in state["extra"]:
            scaler.load_state_dict(state["extra"]["scaler"])
        print0(f"[lmlab] resumed from {resume} (step {result.step})")
    ddp_model = model if sharded else wrap_ddp(model, device)
    world = world_size()
    meter = _Mfu(model, device, dtype, amp)
    # CPU autocast: frozen linear weights (LoRA's base layers) as bf16 copies made once, swapped
    # in for each step's forward/backward (autocast re-casts frozen weights at every call), and
    # each activation cast once for all the linears that read it (autocast casts it per layer)
    casts = cpu_amp_casts(model) if cpu_amp and not sharded else None
    loggers = loggers or []
    model.train()

    bar = None
    if cfg.progress and is_main():
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_steps, initial=result.step, desc=run.stage, unit="step",
                   dynamic_ncols=True, file=sys.stderr, mininterval=1.0)
    t_start, steps_done = time.time(), 0
    watch = SlowWatch()  # a hint once when steps slow several-fold (train/slowdown.py)
    last = cfg.max_steps if stop_after is None else min(cfg.max_steps, result.step + stop_after)
    with StopRequest(run.latest_checkpoint) as stop, cpu_amp_attention(model, cpu_amp), \
            lora_sums_in_matmul(model, cpu_amp):
        while result.step < last:
            step = result.step
            t0 = time.time()
            lr = cfg.lr * lr_factor(step, total=cfg.max_steps, warmup=cfg.warmup_steps,
                                    schedule=cfg.schedule, min_ratio=cfg.min_lr_ratio)
            for g in optimizer.param_groups:
                g["lr"] = lr
            micro = [_to(stream.next(), device) for _ in range(cfg.grad_accum)]
            total_units = all_reduce_sum(sum(objective.count(b) for b in micro), device)
            if total_units <= 0:
                raise UserError(f"step {step}: the batch has nothing to train on "
                                f"(all labels masked)")
            loss_sum, metric_sums, tokens, flops = 0.0, {}, 0, 0.0
            # CPU autocast: one autocast region per optimizer step, so its cache casts each
            # fp32 weight to bf16 once per step, not once per micro-batch (grad_accum > 1)
            step_amp = amp_context(device, dtype, weights) if cpu_amp \
                else contextlib.nullcontext()
            with step_amp, (casts.step() if casts else contextlib.nullcontext()):
                for i, batch in enumerate(micro):
                    sync = i == len(micro) - 1 or (ddp_model is model and not sharded)
                    ctx = _no_sync(ddp_model, sharded) if not sync else contextlib.nullcontext()
                    with ctx, (contextlib.nullcontext() if cpu_amp
                               else amp_context(device, dtype, weights)):
                        loss, metrics = objective(ddp_model, batch)
                        if not torch.isfinite(loss):
                            raise TrainingDiverged(
                                f"loss became {loss.item()} at step {step + 1} (micro-batch {i}); "
                                f"stopped without saving. The last good checkpoint is "
                                f"{run.latest_checkpoint() or '(none yet)'}; lower lr or check the "
                                f"data.")
                        scaled = loss * (world / total_units)
                        (scaler.scale(scaled) if scaler else scaled).backward()
                    loss_sum += float(loss.detach())
                    n = _useful_tokens(batch)
                    tokens += n
                    flops += meter.flops(batch, n)
                    for k, v in metrics.items():
                        metric_sums[k] = metric_sums.get(k, 0.0) + float(v)
            killpoint("step")  # gradients accumulated, weights not yet stepped
            if scaler:
                scaler.unscale_(optimizer)
            params = [p for p in model.parameters() if p.requires_grad]
            gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad if cfg.clip_grad > 0
                                                   else float("inf"))
            if hasattr(gnorm, "full_tensor"):  # a DTensor under fsdp: the norm over all shards
                gnorm = gnorm.full_tensor()
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            result.step = step + 1
            steps_done += 1

            dt = time.time() - t0
            row = {"step": result.step,
                   "train/loss": all_reduce_sum(loss_sum, device) / total_units,
                   "train/lr": lr, "train/grad_norm": float(gnorm),
                   "train/tokens": all_reduce_sum(tokens, device),
                   "train/step_s": dt}
            row["train/tokens_per_s"] = row["train/tokens"] / max(dt, 1e-9)
            if watch.see(row["train/tokens_per_s"], dt):
                (bar.write if bar is not None else print0)(
                    hint(watch.best / row["train/tokens_per_s"]))
            unit = getattr(objective, "unit", None)  # e.g. "img": what count() counts
            if unit:
                row[f"train/{unit}_per_s"] = total_units / max(dt, 1e-9)
            util = meter.of(all_reduce_sum(flops, device), dt, world)
            if util is not None:
                row["train/mfu"] = util
            for k, v in metric_sums.items():
                row[f"train/{k}"] = all_reduce_sum(v, device) / total_units
            mem = _memory_gb(device)
            if mem is not None:
                row["train/mem_gb"] = mem
            eta = (time.time() - t_start) / steps_done * (cfg.max_steps - result.step)

            evaluated = eval_fn is not None and cfg.eval_every \
                and result.step % cfg.eval_every == 0 and result.step < cfg.max_steps
            if evaluated:
                row.update(_run_eval(eval_fn, model))
            # an eval's row is always logged (eval_every=250 with log_every=100 lost it)
            if result.step % cfg.log_every == 0 or result.step == cfg.max_steps or evaluated:
                run.log_metrics(row)
                for lg in loggers:
                    lg.log(row, result.step)
                line = step_line(result.step, cfg.max_steps, row, eta)
                if bar is not None:
                    bar.set_postfix_str(line.split(" | ", 1)[1], refresh=False)
                else:
                    print0(line)
            result.metrics.append(row)
            if bar is not None:
                bar.update(1)
            if not math.isfinite(row["train/loss"]):
                raise TrainingDiverged(f"loss became {row['train/loss']} at step {result.step}")
            interrupted = stop.agreed(device)  # a Ctrl-C during this step (interrupt.py)
            due = (cfg.save_every and result.step % cfg.save_every == 0) or result.step == last
            extra = {"scaler": scaler.state_dict()} if scaler else None
            if (due or interrupted) and sharded:  # every rank writes its shards
                save_sharded(run.checkpoints, result.step, model=model, optimizer=optimizer,
                             stream=stream, keep=cfg.keep_checkpoints, extra=extra)
            elif (due or interrupted) and is_main():
                save_checkpoint(run.checkpoints, result.step, model=model, optimizer=optimizer,
                                stream=stream, keep=cfg.keep_checkpoints, extra=extra,
                                buffers=save_buffers)
            if interrupted:
                barrier()  # no rank exits (its launcher then stops the others) before the save
                if bar is not None:
                    bar.close()
                raise TrainingInterrupted.at(result.step, cfg.max_steps, run.checkpoints)
        if steps_done and stop.agreed(device):  # Ctrl-C after the last step's check: saved
            raise TrainingInterrupted.at(result.step, cfg.max_steps, run.checkpoints)
    if bar is not None:
        bar.close()
    release_model(model, sharded)  # a plain model again, for the stage's final/ and evals
    result.seconds = time.time() - t_start
    if steps_done:
        print0(f"[lmlab] {run.stage}: {steps_done} steps in {format_duration(result.seconds)}")
    model.eval()
    return result


@contextlib.contextmanager
def _no_sync(model, sharded: bool):
    """Accumulate this micro-batch's gradients locally (no all-reduce / reduce-scatter)."""
    if not sharded:
        with model.no_sync():
            yield
        return
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def _run_eval(eval_fn, model) -> dict:
    """A stage's periodic eval, without gradients and uncompiled (compile=true compiles for
    the training step's shapes; an eval's, and any generation's, differ)."""
    from lmlab.models.compiling import eager

    model.eval()
    with torch.no_grad(), eager(model):
        out = eval_fn(model)
    model.train()
    return {k if k.startswith("eval/") else f"eval/{k}": v for k, v in out.items()}
