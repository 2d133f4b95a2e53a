"""compile=true for sft, dpo and reward (lmlab.models.compiling.compiled_for_training).

The default tier (~30 s): the keys and their checks, dtype=auto, and the wiring with a
stand-in for ``torch.compile`` that traces nothing (it records each call of the "compiled"
forward): only the training step's forwards go through it, never an eval, a generation, a
reference forward or the save; and dynamo traces (no inductor) of an autocast LoRA step and
of LoRA and DoRA steps, fp32 and autocast (one graph each).
The slow tier compiles for real (inductor; ~1 min a run from a cold cache): 3-step sft LoRA
and DoRA runs whose losses match the eager run's within a bound derived below, and a 3-step
dpo LoRA run.
"""

import json
from pathlib import Path

import pytest
import torch

from lmlab.cli import main

SFT_DATA = str(Path(__file__).resolve().parents[1] / "assets" / "sft" / "chat.jsonl")


def _run(stage, out, *extra):
    args = [stage, "model=tiny:llama", f"output_dir={out}", "max_steps=3", "lr=1e-2",
            "warmup_steps=0", "progress=false", "method=lora", *extra]
    return main(args)


def _metrics(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def fake_compile(monkeypatch):
    """``torch.compile`` replaced by a recorder: ``Module.compile()`` then installs a plain
    wrapper as the module's compiled call, which ``compiled_modules`` and ``eager`` see as they
    see inductor's. Each call records (grad enabled, module in training mode)."""
    calls = []

    def compile_(fn, *args, **kwargs):
        module = fn.__self__  # Module.compile passes its bound _call_impl

        def compiled(*a, **kw):
            calls.append((torch.is_grad_enabled(), module.training))
            return fn(*a, **kw)
        return compiled

    monkeypatch.setattr(torch, "compile", compile_)
    return calls


# --- the keys ---------------------------------------------------------------------------------


def test_the_compile_keys_are_one_definition():
    """pretrain, sft, dpo and reward take compile / compile_scope from CompileOptions."""
    from dataclasses import fields

    from lmlab.stages import dpo, pretrain, reward, sft
    from lmlab.train.config import CompileOptions

    want = {f.name: (f.default, dict(f.metadata)) for f in fields(CompileOptions)}
    assert set(want) == {"compile", "compile_scope"}
    for stage in (pretrain, sft, dpo, reward):
        got = {f.name: (f.default, dict(f.metadata)) for f in fields(stage.Config)
               if f.name in want}
        assert got == want, stage.__name__


@pytest.mark.parametrize("stage", ["sft", "dpo", "reward"])
def test_dtype_auto_knows_the_run_compiles(tmp_path, monkeypatch, capsys, stage):
    """start_stage hands cfg.compile to resolve_precision as for pretrain: tiny:llama is 64
    wide, below the eager width floor, so on a CPU with fast bf16 only a compiled run takes
    bf16 autocast."""
    import importlib

    from lmlab.stages.setup import start_stage
    from tests.train.test_precision import table

    monkeypatch.delenv("LMLAB_AUTO_DTYPE", raising=False)
    monkeypatch.setattr("lmlab.common.probe_table", lambda device, **kw: table(100.0, 800.0))
    config = importlib.import_module(f"lmlab.stages.{stage}").Config
    for flag, label in ((True, "bf16 autocast"), (False, "fp32")):
        cfg = config(model="tiny:llama", compile=flag, output_dir=str(tmp_path / str(flag)))
        ctx = start_stage(cfg, stage)
        assert ctx.autocast == flag and ctx.weights_dtype == torch.float32
        assert capsys.readouterr().out.splitlines()[0].startswith(
            f"[lmlab] dtype auto -> {label}")


@pytest.mark.parametrize("stage", ["sft", "dpo", "reward"])
def test_an_unknown_compile_scope_is_refused_naming_the_key(tmp_path, capsys, stage):
    rc = main([stage, "model=tiny:llama", f"output_dir={tmp_path / 'run'}", "compile=true",
               "compile_scope=layers"])
    err = capsys.readouterr().err
    assert rc != 0 and "compile_scope: 'layers' is not one of model, blocks" in err
    assert not (tmp_path / "run").exists()  # refused before the run folder is touched


def test_compiled_for_training_compiles_for_the_block_only(capsys):
    """In place (same modules, same state_dict keys), with the log line; switched off for
    good after the block; nothing at all without compile=true."""
    from types import SimpleNamespace

    from lmlab.models import load_model
    from lmlab.models.compiling import compiled_for_training, compiled_modules

    model = load_model("tiny:llama")
    keys = list(model.state_dict())
    with compiled_for_training(model, SimpleNamespace(compile=False, compile_scope="model")):
        assert compiled_modules(model) == []
    assert capsys.readouterr().out == ""
    opts = SimpleNamespace(compile=True, compile_scope="blocks")
    with compiled_for_training(model, opts) as m:  # Module.compile traces nothing yet
        assert m is model and compiled_modules(model) == list(model.model.layers)
        assert list(model.state_dict()) == keys
    assert compiled_modules(model) == []
    assert capsys.readouterr().out == ("[lmlab] compile: 2 LlamaDecoderLayer blocks (compiled "
                                       "once, reused); the first step compiles\n")


# --- wiring: only the training step is compiled -----------------------------------------------


def test_sft_compiles_the_step_and_evaluates_eagerly(tmp_path, fake_compile):
    """3 steps, one micro-batch each: 3 compiled calls, all training forwards with gradients;
    the task eval at step 2 and after training (generation) and the save are eager."""
    out = tmp_path / "run"
    rc = _run("sft", out, "data=task:add", "data_limit=16", "batch_size=4", "compile=true",
              "eval_every=2", "eval_n=2", "eval_splits=[test]", "eval_max_new_tokens=2")
    assert rc == 0
    assert fake_compile == [(True, True)] * 3
    assert any(k.startswith("eval/") for k in _metrics(out)[1])  # the eval at step 2
    assert json.loads((out / "summary.json").read_text())["eval_after"]
    assert (out / "samples.jsonl").is_file()


@pytest.mark.parametrize("loss", ["dpo", "kto"])
def test_dpo_compiles_the_policy_step_only(tmp_path, fake_compile, loss):
    """LoRA's reference (adapters off, no gradient) and KTO's mismatched twins run eagerly;
    so do the held-out eval at step 2 and after, and the KL's generation."""
    from tests.stages.test_dpo import _rows, _write

    out = tmp_path / "run"
    rc = _run("dpo", out, f"data={_write(tmp_path, _rows())}", f"loss={loss}",
              "batch_size=2", "compile=true", "eval_every=2", "eval_n=2", "kl_n=2",
              "kl_max_new_tokens=2")
    assert rc == 0
    assert len(fake_compile) >= 3 and set(fake_compile) == {(True, True)}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kl"]["kl/prompts"] == 2 and "eval/rewards/accuracy" in summary["eval_after"]


def test_reward_compiles_the_step_only(tmp_path, fake_compile):
    from tests.stages.test_reward import _rows, _write

    out = tmp_path / "run"
    rc = _run("reward", out, f"data={_write(tmp_path, _rows())}", "batch_size=2",
              "compile=true", "eval_every=2", "eval_n=2")
    assert rc == 0
    assert fake_compile == [(True, True)] * 3
    assert "eval/accuracy" in json.loads((out / "summary.json").read_text())["eval_after"]


# --- under CPU bf16 autocast ------------------------------------------------------------------


def test_under_cpu_autocast_the_lora_fused_sum_is_traced_and_no_cast_hooks(
        tmp_path, monkeypatch):
    """The stage compiles before the loop sets up CPU autocast, and nothing is traced until
    the first step: dynamo (with a backend that only records the graph, no inductor) traces
    the forward that ``lora_sums_in_matmul`` installed (each LoRA update into its base
    matmul: one ``addmm`` per adapted projection, 7 a layer), in one graph, and the loop puts
    no input-cast hooks on the compiled model."""
    from functools import partial

    from lmlab.train import loop

    graphs, casts = [], []

    def record(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    real_casts = loop.cpu_amp_casts

    def spy_casts(model):
        casts.append(real_casts(model))
        return casts[-1]

    monkeypatch.setenv("LMLAB_AUTO_DTYPE", "bf16")  # dtype=auto -> bf16 autocast on any CPU
    monkeypatch.setattr(torch, "compile", partial(torch.compile, backend=record))
    monkeypatch.setattr(loop, "cpu_amp_casts", spy_casts)
    out = tmp_path / "run"  # all 8 rows in every batch: one shape, one graph
    assert _run("sft", out, f"data={SFT_DATA}", "batch_size=8", "max_steps=2", "eval_n=0",
                "compile=true") == 0
    assert len(graphs) == 1 and casts[0].inputs is None and casts[0].frozen is not None
    addmms = [n for n in graphs[0].graph.nodes if n.target is torch.addmm]
    assert len(addmms) == 7 * 2  # q, k, v, o, gate, up, down in both layers


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_dora_is_traced_in_one_graph_as_lora_is(tmp_path, monkeypatch, dtype):
    """peft's DoRA layer reads its base weight through a function dynamo cannot trace, one
    graph break per DoRA layer, which ``lmlab.models.compiling.traceable_peft`` swaps for a
    traceable one. With every row in every batch (one shape) a step is then one graph for DoRA
    as for LoRA, fp32 and under bf16 autocast, and DoRA's graph holds each DoRA layer's weight
    norm: one per adapted projection, 7 a layer."""
    from functools import partial

    graphs = []

    def record(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()  # earlier tests' compiled code must not count against the cache
    monkeypatch.setattr(torch, "compile", partial(torch.compile, backend=record))
    if dtype == "bf16":
        monkeypatch.setenv("LMLAB_AUTO_DTYPE", "bf16")  # dtype=auto -> bf16 autocast
    for method in ("lora", "dora"):
        graphs.clear()
        out = tmp_path / method
        assert _run("sft", out, f"data={SFT_DATA}", "batch_size=8", "max_steps=2",
                    "eval_n=0", "compile=true", f"method={method}",
                    *(["dtype=fp32"] if dtype == "fp32" else [])) == 0
        assert len(graphs) == 1, method
    norms = [n for n in graphs[0].graph.nodes if n.target is torch.linalg.norm]
    assert len(norms) == 7 * 2


# --- compiled for real (inductor) -------------------------------------------------------------


def _logit_bound(model) -> float:
    """max |logit| of a llama with a final RMSNorm and no head bias, from its weights: the
    normalised state has L2 norm sqrt(D) before the norm's gain, so |z_v| <= sqrt(D) x
    max |gain| x ||W_v|| (Cauchy-Schwarz). tiny:llama: 1.74."""
    d = model.config.hidden_size
    return float(d ** 0.5 * model.model.norm.weight.detach().abs().max()
                 * model.lm_head.weight.detach().norm(dim=1).max())


def _dora_terms(config, r: int) -> int:
    """The roundings DoRA adds to a llama forward's longest path (``forward_terms``): each of
    a layer's 7 adapted products is scaled by magnitude / ||W + s B A|| per output row, a sum
    of squares over the product's input width (6 over D, down's over the MLP width I) after
    B A's sum over r."""
    return config.num_hidden_layers * (6 * config.hidden_size + config.intermediate_size
                                       + 7 * r)


def _token_logp_tol(model, context: int, extra_terms: int = 0) -> float:
    """How far one token's log-probability may move between the compiled and the eager
    forward: its logits differ by at most forward_tol x max |logit| (tests.tolerance; with
    ``extra_terms`` more roundings on the longest path, as DoRA's), a log softmax is
    2-Lipschitz in them (the logit itself and the log-sum-exp), and the sum over the
    vocabulary inside the log-sum-exp adds its own roundings (relative on the sum of
    probabilities, so absolute on its log)."""
    from tests.tolerance import forward_terms, fp32_tol, sum_terms

    forward = fp32_tol(sum_terms(forward_terms(model.config, context) + extra_terms))
    return 2 * forward * _logit_bound(model) + fp32_tol(sum_terms(model.config.vocab_size))


def _adam_step_bound(t: int, beta1: float = 0.9, beta2: float = 0.999) -> float:
    """Largest |AdamW step| / lr per element at step t (weight decay 0), for any gradients:
    the bias-corrected m_hat = sum a_i g_i and v_hat = sum b_i g_i^2, so by Cauchy-Schwarz
    |m_hat| <= sqrt(sum a_i^2 / b_i) sqrt(v_hat). 1 at t = 1, 1.0013 at t = 2."""
    a = [(1 - beta1) * beta1 ** (t - i) / (1 - beta1 ** t) for i in range(1, t + 1)]
    b = [(1 - beta2) * beta2 ** (t - i) / (1 - beta2 ** t) for i in range(1, t + 1)]
    return sum(x * x / y for x, y in zip(a, b)) ** 0.5


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "dora"])
def test_compiled_sft_matches_eager_and_saves_the_same_final(tmp_path, capsys, method):
    """3 fp32 steps of sft LoRA or DoRA on batches of varying lengths (compiled: static, then
    dynamic graphs), with a task eval at step 2: the same seed gives the eager run's losses
    within

        2 x forward_tol(config, max_len) x max|logit| + fp32_tol(sum_terms(V))   per token
        + fp32_tol(sum_terms(N), loss)                  the mean over the step's N tokens
        + sqrt(n) x grad_norm x 2 x sum_j lr_j x adam_step_bound(j)   (from step 2 on)

    The first two lines are two orders of the same forward (inductor fuses and reorders the
    sums; see ``_token_logp_tol``). The last is what the weights may differ by: AdamW moves
    each of the n trained weights by at most lr x adam_step_bound per step whatever the
    gradient, so a rounding-level gradient difference can move a weight twice that (a
    near-zero gradient changing sign), which changes the loss by at most ||grad||_1 <=
    sqrt(n) ||grad||_2 times it, to first order. lr is small so that this term stays near
    the forward's (~1e-3, where a step's batch moves the loss by ~0.05). DoRA's forward_tol
    counts its weight norms' roundings too (``_dora_terms``)."""
    from safetensors import safe_open

    from lmlab.models import load_model
    from tests.tolerance import fp32_tol, sum_terms

    common = ("data=task:add", "data_limit=24", "batch_size=4", "lr=1e-6", "weight_decay=0",
              "lora_dropout=0",  # inductor draws its own dropout masks
              "eval_every=2", "eval_n=2", "eval_splits=[test]", "eval_max_new_tokens=2",
              f"method={method}", "lora_r=16")
    assert _run("sft", tmp_path / "eager", *common) == 0
    capsys.readouterr()
    assert _run("sft", tmp_path / "compiled", *common, "compile=true") == 0
    assert "[lmlab] compile: the whole model;" in capsys.readouterr().out
    eager, compiled = _metrics(tmp_path / "eager"), _metrics(tmp_path / "compiled")
    assert [r["step"] for r in compiled] == [1, 2, 3]
    assert any(k.startswith("eval/") for k in compiled[1])  # the eager eval at step 2
    model = load_model("tiny:llama")
    n = json.loads((tmp_path / "eager" / "summary.json").read_text())["trainable_params"]
    extra = _dora_terms(model.config, 16) if method == "dora" else 0
    moved = 0.0  # bound on |w_eager - w_compiled| per element before this step
    for step, (e, c) in enumerate(zip(eager, compiled), start=1):
        tol = (_token_logp_tol(model, 256, extra) + fp32_tol(sum_terms(e["train/tokens"]),
                                                      e["train/loss"])
               + n ** 0.5 * e["train/grad_norm"] * moved)
        assert abs(c["train/loss"] - e["train/loss"]) <= tol, (step, tol)
        moved += 2 * e["train/lr"] * _adam_step_bound(step)

    def keys(run):
        with safe_open(str(run / "final" / "model.safetensors"), "pt") as f:
            return sorted(f.keys())
    assert keys(tmp_path / "compiled") == keys(tmp_path / "eager")


@pytest.mark.slow
def test_compiled_dpo_lora_three_steps(tmp_path, tokenizer, capsys):
    """The compiled policy against its eager reference (the same weights, adapters off): at
    step 1 the DPO loss is log 2 up to their rounding. Each pair's implied-reward difference
    x = beta ((c - c_ref) - (r - r_ref)) is off by at most beta x the two replies' summed
    token errors (``_token_logp_tol`` per token), and -log sigmoid is 1-Lipschitz, so
    |loss - log 2| <= beta x (n_chosen + n_rejected) x that, with n the most reply tokens
    of any pair."""
    import math

    from lmlab.data import encode_preference
    from lmlab.models import load_model
    from tests.stages.test_dpo import _rows, _write

    rows = _rows()
    out = tmp_path / "run"
    assert _run("dpo", out, f"data={_write(tmp_path, rows)}", "batch_size=2", "lr=1e-3",
                "eval_n=2", "kl_n=2", "kl_max_new_tokens=4", "compile=true") == 0
    assert "[lmlab] compile: the whole model;" in capsys.readouterr().out
    metrics = _metrics(out)
    assert [r["step"] for r in metrics] == [1, 2, 3]
    replies = max(sum(x != -100 for x in ex["chosen_labels"])
                  + sum(x != -100 for x in ex["rejected_labels"])
                  for ex in (encode_preference(tokenizer, r, 256) for r in rows))
    tol = 0.1 * replies * _token_logp_tol(load_model("tiny:llama"), 256)  # beta 0.1
    assert abs(metrics[0]["train/loss"] - math.log(2)) <= tol
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kl"]["kl/prompts"] == 2 and "eval/rewards/accuracy" in summary["eval_after"]
    assert (out / "final" / "model.safetensors").is_file()
