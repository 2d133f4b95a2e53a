"""dtype=auto (lmlab.common.resolve_precision) decided from a faked probe table, the stage
context's weight dtype, and the loop's bf16 autocast over fp32 weights on a CPU."""

import contextlib

import pytest
import torch
import yaml

from lmlab.common import (
    AUTOCAST_MIN_WIDTH,
    BF16_MIN_SPEEDUP,
    Precision,
    decide_auto,
    pick_dtype,
    resolve_precision,
)
from lmlab.errors import ConfigError
from lmlab.losses.objectives import LMObjective
from lmlab.models import load_model
from lmlab.runs import prepare_run
from lmlab.stages.setup import StageContext
from lmlab.train.data import BatchStream
from lmlab.train.loop import amp_context, train
from tests.tolerance import BF16_U

from .helpers import config, pad_collate, random_examples

CPU = torch.device("cpu")


def table(fp32, bf16):
    return {"model": "Fake CPU", "threads": 2,
            "matmul": {"fp32": {"gflops": fp32}, "bf16": {"gflops": bf16}}}


def test_fast_bf16_gives_bf16_autocast_slow_gives_fp32():
    fast = decide_auto(CPU, table(100.0, 100.0 * BF16_MIN_SPEEDUP))
    assert (fast.dtype, fast.autocast, fast.label) == (torch.bfloat16, True, "bf16 autocast")
    assert "1.3x fp32 on Fake CPU" in fast.reason and "fp32 master weights" in fast.reason
    slow = decide_auto(CPU, table(100.0, 129.0))  # AVX2 without bf16 units: at best ~1x
    assert (slow.dtype, slow.autocast, slow.label) == (torch.float32, False, "fp32")
    assert "only 1.29x" in slow.reason
    unmeasured = decide_auto(CPU, {"matmul": {"fp32": {"gflops": 100.0}}})
    assert unmeasured.dtype == torch.float32 and "no bf16 matmul" in unmeasured.reason


def test_auto_asks_the_probe_unless_pinned_or_the_stage_keeps_fp32(monkeypatch):
    monkeypatch.delenv("LMLAB_AUTO_DTYPE", raising=False)
    asked = []

    def fast(device):
        asked.append(device)
        return table(100.0, 800.0)

    assert resolve_precision("auto", CPU, table_fn=fast).label == "bf16 autocast"
    assert asked == [CPU]
    kept = resolve_precision("auto", CPU, autocast_ok=False, table_fn=fast)
    assert kept.label == "fp32" and len(asked) == 1  # no probe needed
    monkeypatch.setenv("LMLAB_AUTO_DTYPE", "fp32")
    assert resolve_precision("auto", CPU, table_fn=fast).label == "fp32"
    monkeypatch.setenv("LMLAB_AUTO_DTYPE", "bf16")
    pinned = resolve_precision("auto", CPU, table_fn=fast)
    assert pinned.label == "bf16 autocast" and "LMLAB_AUTO_DTYPE" in pinned.reason
    assert len(asked) == 1


def test_explicit_dtypes_keep_their_meaning():
    assert resolve_precision("fp32", CPU) == Precision(torch.float32, False, "dtype=fp32")
    # on a CPU an explicit bf16 is the weights' dtype (no autocast), as before
    assert resolve_precision("bf16", CPU) == Precision(torch.bfloat16, False, "dtype=bf16")
    assert pick_dtype("auto", CPU) == torch.float32  # inference stages: unchanged


def test_the_gpu_path_is_unchanged(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", cuda, table_fn=None).label == "bf16 autocast"
    assert resolve_precision("bf16", cuda).autocast
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", cuda, table_fn=None).label == "fp16 autocast"
    ctx = StageContext(run=None, device=cuda, dtype=torch.float16)
    assert ctx.weights_dtype == torch.float32


def test_weights_stay_fp32_under_autocast_and_bf16_weights_need_none():
    auto = StageContext(run=None, device=CPU, dtype=torch.bfloat16, autocast=True)
    explicit = StageContext(run=None, device=CPU, dtype=torch.bfloat16)
    assert auto.weights_dtype == torch.float32 and explicit.weights_dtype == torch.bfloat16
    with amp_context(CPU, torch.bfloat16, torch.float32):
        assert torch.is_autocast_enabled("cpu")
    for weights in (torch.bfloat16, torch.float32):
        ctx = amp_context(CPU, torch.bfloat16 if weights == torch.bfloat16 else torch.float32,
                          weights)
        assert isinstance(ctx, contextlib.nullcontext)


@pytest.mark.parametrize("bad", ["int4", "float8", "bfloat"])
def test_unknown_dtypes_are_refused_by_name(bad):
    with pytest.raises(ConfigError) as e:
        pick_dtype(bad, CPU)
    assert f"dtype: '{bad}' is not one of auto, fp32, bf16, fp16" in str(e.value)


def _train(tmp_path, dtype):
    cfg = config(tmp_path, max_steps=3, lr=1e-3)
    run = prepare_run(cfg, "test")
    model = load_model("tiny:llama")
    stream = BatchStream(random_examples(), cfg.batch_size, pad_collate, seed=0)
    res = train(model, LMObjective(), stream, cfg, run, dtype=dtype)
    return model, res, run


def test_bf16_autocast_trains_fp32_weights_close_to_fp32(tmp_path):
    _, r32, run = _train(tmp_path / "fp32", torch.float32)
    m16, r16, _ = _train(tmp_path / "bf16", torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in m16.parameters())
    first32, first16 = r32.metrics[0]["train/loss"], r16.metrics[0]["train/loss"]
    # the first step's loss comes from the same weights. Autocast rounds each matmul operand to
    # bf16 (at most BF16_U relative, 2 BF16_U per product); about 4 matmuls lie on the path to
    # a logit, and a tiny llama's logits are below ~2 in size, so a logit moves by at most
    # ~2 x 4 x 2 BF16_U; a cross-entropy moves by at most twice its largest logit change.
    # (Measured on an AMX Xeon: 7e-5, against this bound of 0.06.)
    assert first16 != first32  # autocast did run (rounding leaves some trace)
    assert abs(first16 - first32) <= 2 * (2 * 4 * 2 * BF16_U)
    rows = run.read_metrics()
    assert all(0 < r["train/mfu"] < 1 for r in rows)  # the probe's fp32 rate was found


def test_config_yaml_records_what_auto_became(tmp_path):
    from lmlab.train.config import TrainConfig

    cfg = TrainConfig(model="tiny:llama", output_dir=str(tmp_path / "r"))
    run = prepare_run(cfg, "sft", resolved={"dtype": "bf16 autocast", "dtype_reason": "why"})
    saved = yaml.safe_load((run.path / "config.yaml").read_text())
    assert saved["dtype"] == "auto"
    assert saved["resolved"] == {"dtype": "bf16 autocast", "dtype_reason": "why"}
    from lmlab.config import load_config

    assert load_config(TrainConfig, run.path / "config.yaml", stage="sft") == cfg


@pytest.mark.parametrize("stage,width,label,why", [
    ("sft", 576, "bf16 autocast", "bf16 matmul 8.0x fp32 on Fake CPU"),
    ("sft", None, "fp32", "the model is 64 wide (< 256)"),  # tiny:llama's own width
    ("distill", 576, "fp32", "this stage trains in fp32")])
def test_a_stage_prints_and_records_its_choice(tmp_path, monkeypatch, capsys, stage, width,
                                               label, why):
    from lmlab.stages.setup import start_stage
    from lmlab.train.config import TrainConfig

    monkeypatch.setattr("lmlab.common.probe_table", lambda device, **kw: table(100.0, 800.0))
    if width is not None:
        monkeypatch.setattr("lmlab.stages.setup.model_width", lambda cfg: width)
    monkeypatch.delenv("LMLAB_AUTO_DTYPE", raising=False)
    cfg = TrainConfig(model="tiny:llama", output_dir=str(tmp_path / stage))
    ctx = start_stage(cfg, stage)
    assert ctx.autocast == (label != "fp32") and ctx.weights_dtype == torch.float32
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"[lmlab] dtype auto -> {label}: {why}")
    saved = yaml.safe_load((ctx.run.path / "config.yaml").read_text())
    assert saved["resolved"]["dtype"] == label and why in saved["resolved"]["dtype_reason"]


def test_narrow_models_stay_fp32_under_auto(monkeypatch):
    monkeypatch.delenv("LMLAB_AUTO_DTYPE", raising=False)

    def fast(device):
        return table(100.0, 800.0)

    assert resolve_precision("auto", CPU, width=128, table_fn=fast).label == "fp32"
    assert resolve_precision("auto", CPU, width=AUTOCAST_MIN_WIDTH,
                             table_fn=fast).label == "bf16 autocast"
    assert resolve_precision("auto", CPU, width=None, table_fn=fast).label == "bf16 autocast"
    assert resolve_precision("bf16", CPU, width=64).dtype == torch.bfloat16  # asked for


def test_a_compiled_narrow_model_takes_bf16_where_the_probe_says_it_is_fast(monkeypatch):
    """compile=true lifts the width floor (inductor fuses the casts); the probe still decides:
    the same 128-wide model stays fp32 where bf16 matmuls are slow, and eagerly."""
    monkeypatch.delenv("LMLAB_AUTO_DTYPE", raising=False)

    def fast(device):
        return table(100.0, 800.0)

    compiled = resolve_precision("auto", CPU, width=128, compiled=True, table_fn=fast)
    assert compiled.label == "bf16 autocast"
    assert "8.0x fp32" in compiled.reason and "compiled, so at 128 wide too" in compiled.reason
    assert resolve_precision("auto", CPU, width=128, table_fn=fast).label == "fp32"
    slow = resolve_precision("auto", CPU, width=128, compiled=True,
                             table_fn=lambda d: table(100.0, 110.0))
    assert slow.label == "fp32" and "only 1.10x" in slow.reason
    wide = resolve_precision("auto", CPU, width=576, compiled=True, table_fn=fast)
    assert wide.label == "bf16 autocast" and "compiled" not in wide.reason  # as before
    assert resolve_precision("auto", CPU, width=128, compiled=True, autocast_ok=False,
                             table_fn=fast).label == "fp32"  # a stage that keeps fp32 does


def test_pretrain_with_compile_passes_it_to_auto(tmp_path, monkeypatch, capsys):
    """start_stage tells resolve_precision that a pretrain run compiles (nano: 128 wide);
    stages without a compile key resolve as before."""
    from lmlab.stages import pretrain
    from lmlab.stages.setup import start_stage

    monkeypatch.delenv("LMLAB_AUTO_DTYPE", raising=False)
    monkeypatch.setattr("lmlab.common.probe_table", lambda device, **kw: table(100.0, 800.0))
    for flag, label in ((True, "bf16 autocast"), (False, "fp32")):
        cfg = pretrain.Config(preset="nano", compile=flag, output_dir=str(tmp_path / str(flag)))
        ctx = start_stage(cfg, "pretrain", check_model=False)
        assert ctx.autocast == flag and ctx.weights_dtype == torch.float32
        assert capsys.readouterr().out.splitlines()[0].startswith(
            f"[lmlab] dtype auto -> {label}")


def _avx2_table(bf16: float) -> dict:
    """What the probe measures on an AVX2-only CPU (no bf16 units: torch emulates bf16
    matmuls, ~0.03x fp32; the larger shapes skipped as slow), with ``bf16`` as its bf16 rate."""
    return {"device": "cpu", "model": "AMD EPYC 7B13 (faked)", "torch": torch.__version__,
            "threads": 2, "flags": ["avx2", "fma"], "capability": "AVX2",
            "bandwidth_gbs": 20.0, "probe_s": 1.0,
            "matmul": {"fp32": {"gflops": 120.0, "shapes": {"512x576x576": 120.0}},
                       "bf16": {"gflops": bf16, "shapes": {"512x576x576": bf16,
                                                           "512x576x1536": "skipped (slow)"}},
                       "fp16": {"gflops": 3.0, "shapes": {"512x576x576": 3.0}},
                       "int8": {"gflops": 60.0, "shapes": {"512x576x576": 60.0}}}}


def test_on_an_avx2_only_cpu_auto_trains_in_fp32_from_the_measured_bf16_rate(
        tmp_path, monkeypatch, capsys):
    """Issue 31's rule "on an AVX2-only CPU auto is never slower than fp32": through the real
    probe (cache file and all, the measurement faked) a stage under auto trains in fp32 and
    says why. The measured rate decides, not the flags: the same flags with bf16 measured
    1.5x fp32 (a CPU whose torch has a fast bf16 path) pick bf16."""
    from lmlab import hardware
    from lmlab.stages.setup import start_stage
    from lmlab.train.config import TrainConfig

    monkeypatch.delenv("LMLAB_AUTO_DTYPE", raising=False)
    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hardware, "device_model", lambda device: "AMD EPYC 7B13 (faked)")
    monkeypatch.setattr(hardware, "measure_table", lambda device: _avx2_table(4.0))
    monkeypatch.setattr("lmlab.stages.setup.model_width", lambda cfg: 576)
    ctx = start_stage(TrainConfig(model="tiny:llama", output_dir=str(tmp_path / "r")), "sft")
    assert not ctx.autocast and ctx.weights_dtype == torch.float32
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("[lmlab] dtype auto -> fp32: bf16 matmul only 0.03x fp32 on AMD")
    saved = yaml.safe_load((ctx.run.path / "config.yaml").read_text())
    assert saved["resolved"]["dtype"] == "fp32"
    assert list((tmp_path / "cache" / "hardware").glob("*.json"))  # the probe's own cache
    monkeypatch.setattr(hardware, "measure_table", lambda device: _avx2_table(180.0))
    fast = resolve_precision("auto", CPU, width=576,
                             table_fn=lambda d: hardware.probe(None, device=d))
    assert fast.label == "bf16 autocast" and "1.5x fp32" in fast.reason
