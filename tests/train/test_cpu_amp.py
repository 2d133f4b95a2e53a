"""The loop under CPU bf16 autocast (dtype=auto on a fast-bf16 CPU) takes its faster variant:
attention in fp32 (models.amp_attention) and the fused AdamW, fp32 master weights kept; the
fp32 path is the plain loop, bit for bit; resume stays exact under autocast."""

import pytest
import torch

from lmlab.losses.objectives import LMObjective
from lmlab.models import load_model
from lmlab.models.amp_attention import NAME
from lmlab.runs import prepare_run
from lmlab.train import loop
from lmlab.train.data import BatchStream
from lmlab.train.loop import build_optimizer, train
from tests.tolerance import BF16_U

BF16 = torch.bfloat16

from .helpers import config, pad_collate, random_examples


def _spy(monkeypatch):
    """Record the dtype each SDPA call computes in (autocast casts its inputs to bf16 when it
    is on), the attention implementation the model's config names at that call, and whether
    the loop's optimizer was built fused."""
    seen = {"sdpa": [], "fused": []}
    real = torch.nn.functional.scaled_dot_product_attention

    def sdpa(q, *a, **kw):
        amp = torch.is_autocast_enabled("cpu")
        seen["sdpa"].append(torch.get_autocast_dtype("cpu") if amp else q.dtype)
        return real(q, *a, **kw)

    build = loop.build_optimizer

    def recording(model, cfg, **kw):
        seen["fused"].append(kw.get("fused", False))
        return build(model, cfg, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", sdpa)
    monkeypatch.setattr(loop, "build_optimizer", recording)
    return seen


def _train(tmp_path, dtype, *, steps=4, stop=None, **kw):
    cfg = config(tmp_path, max_steps=steps, lr=1e-3, **kw)
    run = prepare_run(cfg, "test")
    torch.manual_seed(0)
    model = load_model("tiny:llama")
    stream = BatchStream(random_examples(), cfg.batch_size, pad_collate, seed=0)
    res = train(model, LMObjective(), stream, cfg, run, dtype=dtype, stop_after=stop)
    return model, res, run


def test_autocast_attends_in_fp32_with_fused_adamw_and_puts_sdpa_back(tmp_path, monkeypatch):
    seen = _spy(monkeypatch)
    model, res, _ = _train(tmp_path, torch.bfloat16, steps=2)
    layers = model.config.num_hidden_layers
    assert seen["fused"] == [True]
    assert seen["sdpa"] == [torch.float32] * (2 * layers)  # every attention, both steps
    assert model.config._attn_implementation == "sdpa"  # restored for final/ and the evals
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert res.step == 2


def test_the_fp32_loop_is_the_plain_loop_bit_for_bit(tmp_path, monkeypatch):
    """dtype fp32: stock sdpa, torch's per-parameter AdamW, the same weights as a loop written
    out here (same batches, the loop's scaling and clipping), to the bit."""
    seen = _spy(monkeypatch)
    model, _, _ = _train(tmp_path / "loop", torch.float32, steps=3)
    assert seen["fused"] == [False] and set(seen["sdpa"]) == {torch.float32}
    cfg = config(tmp_path / "ref", max_steps=3, lr=1e-3)
    torch.manual_seed(0)
    ref = load_model("tiny:llama")
    assert ref.config._attn_implementation == "sdpa" != NAME
    opt = build_optimizer(ref, cfg)
    stream = BatchStream(random_examples(), cfg.batch_size, pad_collate, seed=0)
    obj = LMObjective()
    ref.train()
    for _ in range(3):
        batch = stream.next()
        loss, _ = obj(ref, batch)
        (loss * (1 / obj.count(batch))).backward()
        torch.nn.utils.clip_grad_norm_([p for p in ref.parameters() if p.requires_grad],
                                       cfg.clip_grad)
        opt.step()
        opt.zero_grad(set_to_none=True)
    for (n, a), b in zip(model.named_parameters(), ref.parameters()):
        assert torch.equal(a, b), n


def test_autocast_loss_curve_stays_within_bf16_rounding_of_fp32(tmp_path):
    """Five steps of the autocast variant against fp32 from the same weights and batches. Step
    1: each matmul operand rounded to bf16 (2 BF16_U per product), ~4 products on the path to a
    logit of size < 2, a cross-entropy moving by at most twice its largest logit change: 0.06
    (test_precision). Later steps add the drift of weights updated from bf16-rounded
    gradients; Adam's update per element is at most ~lr, so the bound grows by the first
    step's each step. (Measured on the AMX Xeon: gaps of 7e-5 to 7e-4 over the five steps.)"""
    _, r32, _ = _train(tmp_path / "fp32", torch.float32, steps=5)
    _, r16, _ = _train(tmp_path / "bf16", torch.bfloat16, steps=5)
    l32 = [r["train/loss"] for r in r32.metrics]
    l16 = [r["train/loss"] for r in r16.metrics]
    one = 2 * (2 * 4 * 2 * BF16_U)
    for k, (a, b) in enumerate(zip(l32, l16), start=1):
        assert a != b or k > 1  # autocast ran
        assert abs(a - b) <= one * k, (k, a, b)
    assert l16[-1] < l16[0] - 0.01  # it trains


def test_resume_under_autocast_is_exact(tmp_path):
    full, res_full, _ = _train(tmp_path / "a", torch.bfloat16, steps=4)
    _train(tmp_path / "b", torch.bfloat16, steps=4, stop=2)
    torch.manual_seed(1234)
    resumed, res_b, run_b = _train(tmp_path / "b", torch.bfloat16, steps=4, resume="auto")
    assert res_b.resumed_from == 2 and res_b.step == 4
    for (n, a), b in zip(full.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), n
    assert [r["train/loss"] for r in run_b.read_metrics()] == pytest.approx(
        [r["train/loss"] for r in res_full.metrics], abs=0, rel=0)


def _count_weight_casts(monkeypatch) -> list[int]:
    """Patch the loop so each training run appends how many fp32 -> bf16 (and back) casts of
    the model's matrices it made (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    counts, real = [], loop._train

    def profiled(model, *a, **k):
        shapes = {tuple(p.shape) for p in model.parameters() if p.ndim == 2}
        shapes |= {s[::-1] for s in shapes}  # LoRA's base matmul casts W^T (amp_adapters)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            out = real(model, *a, **k)
        counts.append(sum(1 for e in prof.events() if e.name == "aten::_to_copy"
                          and e.input_shapes and tuple(e.input_shapes[0]) in shapes))
        return out

    monkeypatch.setattr(loop, "_train", profiled)
    return counts


def test_autocast_casts_each_weight_once_per_step_across_micro_batches(tmp_path, monkeypatch):
    """grad_accum=3: one autocast region per optimizer step, so its cache casts each matrix
    once for all three micro-batches (the backward's casts of the gradients back to fp32 are
    per micro-batch either way)."""
    counts = _count_weight_casts(monkeypatch)
    _train(tmp_path / "1", torch.bfloat16, steps=1, grad_accum=1, batch_size=4)
    _train(tmp_path / "3", torch.bfloat16, steps=1, grad_accum=3, batch_size=4)
    one, three = counts
    # per micro-batch: n forward casts + n gradient casts; per step: n + 3 n, not 3 n + 3 n
    n = one // 2
    assert one == 2 * n and n > 0
    assert three == n + 3 * n


def _init_model(method, dropout=0.1, targets=("q_proj", "v_proj", "up_proj")):
    from lmlab.models.methods import MethodSpec, apply_method

    torch.manual_seed(0)
    spec = MethodSpec(method, lora_r=4, lora_alpha=8, lora_dropout=dropout,
                      lora_targets=list(targets))
    return apply_method(load_model("tiny:llama"), spec)


def _init_params(method, **kw):
    return [p.detach() for p in _init_model(method, **kw).parameters()]


def _train_lora(tmp_path, *, steps=3, method="lora", dropout=0.1,
                targets=("q_proj", "v_proj", "up_proj"), **kw):
    cfg = config(tmp_path, max_steps=steps, lr=1e-2, **kw)
    run = prepare_run(cfg, "test")
    model = _init_model(method, dropout, targets)
    stream = BatchStream(random_examples(), cfg.batch_size, pad_collate, seed=0)
    res = train(model, LMObjective(), stream, cfg, run, dtype=torch.bfloat16)
    return model, [r["train/loss"] for r in res.metrics]


def _truncate(t):
    """A cast to bf16 that drops the low 16 bits (rounds toward zero), unlike autocast's."""
    return (t.view(torch.int32) & -65536).view(torch.float32).to(torch.bfloat16)


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_lora_frozen_bf16_copies_equal_plain_autocast(tmp_path, monkeypatch, method):
    """LoRA (and IA3, whose forward reads its base weight only in the base matmul) under CPU
    autocast: the frozen base weights swapped to bf16 copies made once (the tied lm_head
    through its own bf16 parameter, the embedding keeps fp32) give the plain autocast run's
    losses and weights to the bit; a copy rounded otherwise (truncated) does not; every weight
    is fp32 after training."""
    made = []

    def recording(model, cast=None):
        f = loop_frozen(model, cast)
        made.append(f)
        return f

    loop_frozen = loop.FrozenBf16
    monkeypatch.setattr(loop, "FrozenBf16", recording)
    ours, l_ours = _train_lora(tmp_path / "ours", method=method)
    with monkeypatch.context() as m:  # plain autocast: none of the loop's cast savings
        m.setattr(loop, "cpu_amp_casts", lambda model: None)
        plain, l_plain = _train_lora(tmp_path / "plain", method=method)
    monkeypatch.setattr(loop, "FrozenBf16", lambda model: loop_frozen(model, _truncate))
    _, l_trunc = _train_lora(tmp_path / "trunc", method=method)

    (f,) = made
    linears = [m for m in ours.modules() if type(m) is torch.nn.Linear
               and not m.weight.requires_grad]
    tied = ours.get_output_embeddings().weight
    assert tied is ours.get_input_embeddings().weight
    assert {id(p) for p in f.params} == {id(m.weight) for m in linears} - {id(tied)}
    assert [(id(h), id(p)) for h, p in f.heads] == [(id(ours.get_output_embeddings()), id(tied))]
    assert ours.get_output_embeddings().weight is tied  # put back after each step
    assert len(f.params) > 0 and f.made == len(f.params) + 1  # one copy each, for all steps
    assert l_ours == l_plain  # exact
    for (n, a), b in zip(ours.named_parameters(), plain.parameters()):
        assert a.dtype == torch.float32 and torch.equal(a, b), n
    assert l_trunc[0] != l_plain[0]  # the test sees a cast that rounds differently
    trained = [(p, q) for (n, p), q in zip(ours.named_parameters(), _init_params(method))]
    assert any(not torch.equal(p, q) for p, q in trained)  # the adapters moved


def test_dora_base_weights_stay_fp32_under_autocast(tmp_path, monkeypatch):
    """DoRA reads its base weight outside a matmul (the weight norm): not swapped."""
    from lmlab.train.frozen_bf16 import eligible

    made = []
    real = loop.FrozenBf16
    monkeypatch.setattr(loop, "FrozenBf16", lambda m: made.append(real(m)) or made[-1])
    model, _ = _train_lora(tmp_path, steps=1, method="dora")
    bases = {id(m.base_layer.weight) for m in model.modules()
             if hasattr(m, "lora_magnitude_vector") and hasattr(m, "base_layer")}
    assert bases and not bases & {id(p) for p in made[0].params}
    assert made[0].params == eligible(model)


def test_frozen_copy_is_refreshed_when_the_weight_changes():
    from lmlab.train.frozen_bf16 import FrozenBf16

    lin = torch.nn.Linear(4, 3, bias=False).requires_grad_(False)
    f = FrozenBf16(lin)
    with f.swapped():
        assert lin.weight.dtype == torch.bfloat16
        first = lin(torch.ones(1, 4, dtype=torch.bfloat16))
    assert lin.weight.dtype == torch.float32 and f.made == 1
    with f.swapped():
        pass
    assert f.made == 1  # unchanged: the same copy
    lin.load_state_dict({"weight": torch.full((3, 4), 2.0)})
    with f.swapped():
        assert torch.equal(lin(torch.ones(1, 4, dtype=torch.bfloat16)),
                           torch.full((1, 3), 8.0, dtype=torch.bfloat16))
    assert f.made == 2 and not torch.equal(first, torch.full((1, 3), 8.0))


def test_lora_autocast_casts_frozen_weights_once_per_run(tmp_path, monkeypatch):
    """Three LoRA steps: plain autocast casts each frozen weight at every forward; with the
    copies, once for the run (the trainable LoRA matrices' casts are the same either way)."""
    counts = _count_weight_casts(monkeypatch)
    ours, _ = _train_lora(tmp_path / "ours", steps=3)
    real = loop.FrozenBf16
    monkeypatch.setattr(loop, "FrozenBf16", lambda model: None)
    _train_lora(tmp_path / "plain", steps=3)
    with_copies, plain = counts
    n = len(real(ours).params) + len(real(ours).heads)  # the base weights, the tied head
    assert n > 1 and plain - with_copies == 2 * n  # steps 2 and 3 cast nothing frozen


def test_tied_head_is_bf16_inside_a_step_and_the_embedding_fp32():
    from lmlab.train.frozen_bf16 import FrozenBf16

    model = _init_model("lora")
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    f = FrozenBf16(model)
    with f.swapped():
        assert head.weight.dtype == torch.bfloat16 and emb.weight.dtype == torch.float32
        assert torch.equal(head.weight, emb.weight.to(torch.bfloat16))
        assert not head.weight.requires_grad
    assert head.weight is emb.weight and emb.weight.dtype == torch.float32
    full = load_model("tiny:llama")  # a trained (unfrozen) head is left alone
    assert FrozenBf16(full).heads == []


def _train_inputs(tmp_path, monkeypatch, shared, **kw):
    """LoRA (or full, targets=None) under CPU autocast with the loop's frozen copies and
    ``shared`` standing in for SharedInputCasts (None: autocast casts every input)."""
    made = []

    def build(model):
        made.append(shared(model) if shared else None)
        return loop.CpuAmpCasts(loop.FrozenBf16(model), made[-1])

    with monkeypatch.context() as m:
        m.setattr(loop, "cpu_amp_casts", build)
        if kw.pop("full", False):
            model, res, _ = _train(tmp_path, torch.bfloat16, steps=3)
            return model, [r["train/loss"] for r in res.metrics], made[0]
        model, losses = _train_lora(tmp_path, **kw)
    return model, losses, made[0]


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_shared_input_casts_equal_plain_autocast(tmp_path, monkeypatch, dropout):
    """LoRA on every projection under CPU autocast: each fp32 activation cast once for all
    the linears reading it (q/k/v and their lora_A; gate/up and theirs) and, without dropout,
    peft's cast up of o_proj/down_proj inputs skipped, give plain autocast's losses and
    weights to the bit (the gradients still meet in fp32, in the same order); a cast rounding
    otherwise (truncating) does not; the casts were shared."""
    from lmlab.train.amp_inputs import SharedInputCasts

    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    kw = {"dropout": dropout, "targets": targets}
    ours, l_ours, s = _train_inputs(tmp_path / "ours", monkeypatch, SharedInputCasts, **kw)
    plain, l_plain, _ = _train_inputs(tmp_path / "plain", monkeypatch, None, **kw)
    _, l_trunc, _ = _train_inputs(tmp_path / "trunc", monkeypatch,
                                  lambda m: SharedInputCasts(m, _truncate), **kw)
    layers = ours.config.num_hidden_layers
    # 3 forwards; per layer, dropout off: 3 casts made (attention's input; its output, fp32
    # under the loop's fp32 attention; the MLP's input) for 12 readers, plus the head's input;
    # dropout on: only the base layers share (k, v, up)
    if dropout == 0:
        assert (s.made, s.shared) == (3 * (3 * layers + 1), 3 * 9 * layers)
    else:
        assert s.shared == 3 * 3 * layers
    assert len(s.peft) == (len(targets) * layers if dropout == 0 else 0)
    assert l_ours == l_plain
    for (n, a), b in zip(ours.named_parameters(), plain.parameters()):
        assert a.dtype == torch.float32 and torch.equal(a, b), n
    assert l_trunc[0] != l_plain[0]
    assert all(m.cast_input_dtype_enabled for m in s.peft) and s.cache == []  # put back
    init = _init_params("lora", **kw)
    assert any(not torch.equal(p, q) for p, q in zip(ours.parameters(), init))


def test_shared_input_casts_equal_plain_autocast_full(tmp_path, monkeypatch):
    """Full training: q/k/v (and gate/up) share one cast of their input; losses and every
    weight equal plain autocast's to the bit."""
    from lmlab.train.amp_inputs import SharedInputCasts

    ours, l_ours, s = _train_inputs(tmp_path / "ours", monkeypatch, SharedInputCasts, full=True)
    plain, l_plain, _ = _train_inputs(tmp_path / "plain", monkeypatch, None, full=True)
    layers = ours.config.num_hidden_layers
    assert s.shared == 3 * layers * 3  # 3 steps, per layer: k, v and up reuse a cast
    assert l_ours == l_plain
    for (n, a), b in zip(ours.named_parameters(), plain.parameters()):
        assert torch.equal(a, b), n


def test_compiled_models_get_no_input_cast_hooks():
    """pretrain compile=true: inductor fuses the casts; per-step hooks would force recompiles."""
    model = load_model("tiny:llama")
    assert loop.cpu_amp_casts(model).inputs is not None
    model.model.layers[0].compile()  # compile=true's scope=blocks, in place (nothing traced yet)
    assert loop.cpu_amp_casts(model).inputs is None


def test_input_cast_hooks_stop_where_nothing_is_shared():
    """One reader per activation: the first step shares nothing, later steps install no hooks
    (the forward is the same with or without them)."""
    from lmlab.train.amp_inputs import SharedInputCasts

    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    s = SharedInputCasts(net)
    x = torch.randn(3, 4)
    outs = []
    for _ in range(2):
        with torch.autocast("cpu", dtype=torch.bfloat16), s.active():
            outs.append(net(x))
            hooked = [len(m._forward_pre_hooks) for m in s.linears]
        assert all(len(m._forward_pre_hooks) == 0 for m in s.linears)
    assert (s.made, s.shared, s.steps) == (1, 0, 2) and hooked == [0, 0]
    assert torch.equal(outs[0], outs[1]) and outs[0].dtype == torch.bfloat16


def _lora_linear(scale_b: float):
    """A peft LoRA layer (256 -> 512, r 4) whose update is ~``scale_b`` of its base output."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(256, 512, bias=False))
    net = get_peft_model(net, LoraConfig(r=4, lora_alpha=4, target_modules=["0"]))
    layer = net.base_model.model[0]
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_(0, scale_b)
    return net, layer


def _kept(out, base, delta):
    """How much of the update the output kept, as a least-squares factor
    (sum (out - base) delta / sum delta^2: 1 kept in full, 0 lost), and that factor's
    standard deviation when each output carries an independent rounding error uniform within
    half a bf16 step of itself (variance step^2 / 12)."""
    d = delta.double()
    step = torch.finfo(torch.bfloat16).eps * 2.0 ** torch.floor(torch.log2(out.double().abs()))
    factor = float(((out.double() - base.double()) * d).sum() / (d * d).sum())
    sd = float(((d * d * step * step / 12).sum()).sqrt() / (d * d).sum())
    return factor, sd


def test_lora_update_is_added_in_the_matmul_under_autocast():
    """A LoRA update of ~1e-4 of its base output, below a bf16 step of most outputs: plain
    autocast rounds the base output and then the sum, and keeps almost none of the update;
    with lora_sums_in_matmul the GEMM adds it before its one rounding, and the output keeps
    it within 6 standard deviations of that rounding (an unbiased rounding keeps it on
    average). The output stays bf16; outside autocast and after the block it is peft's."""
    from lmlab.models.amp_adapters import lora_layers, lora_sums_in_matmul

    net, layer = _lora_linear(5e-5)  # the update's norm ~1e-4 of the output's
    x = torch.randn(4096, 256)
    with torch.no_grad():
        # the base product of the bf16 operands autocast multiplies, in fp32
        exact = x.to(BF16).float() @ layer.base_layer.weight.to(BF16).float().t()
        delta = layer.lora_B["default"](layer.lora_A["default"](x)) * layer.scaling["default"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain = net(x)
            with lora_sums_in_matmul(net) as n:
                ours = net(x)
        with lora_sums_in_matmul(net):
            fp32_ours = net(x)
        after, fp32_plain = net(x), layer.base_layer(x) + delta
    assert n == 1 and lora_layers(net) == [layer]
    assert plain.dtype == ours.dtype == torch.bfloat16
    kept, sd = _kept(ours, exact, delta)
    assert abs(kept - 1) < 6 * sd and sd < 0.02, (kept, sd)
    lost, sd = _kept(plain, exact, delta)
    assert lost < 0.5, (lost, sd)  # the test sees the rounding it is about
    assert torch.allclose(fp32_ours, fp32_plain) and torch.equal(after, fp32_ours)
    assert "forward" not in layer.__dict__ and "forward" not in layer.base_layer.__dict__


def test_lora_sums_in_matmul_keep_peft_gradients():
    """The fused forward's gradients are peft's (addmm's backward hands the upstream gradient
    to the update and, through W, to x). The two forwards round the sum differently, by at most
    one bf16 step (2 BF16_U) of an output where they differ at all, and the loss's gradient
    (2 out) carries that into the same bf16 backward products: within 2 BF16_U of the norm,
    4 BF16_U with the products' own roundings."""
    from lmlab.models.amp_adapters import lora_sums_in_matmul

    net, _ = _lora_linear(1e-1)
    x = torch.randn(64, 256)

    def grads(fused):
        net.zero_grad()
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16), lora_sums_in_matmul(net, fused):
            net(xi).float().pow(2).sum().backward()
        return [xi.grad] + [p.grad for p in net.parameters() if p.requires_grad]

    ours, plain = grads(True), grads(False)
    for a, b in zip(ours, plain):
        assert a is not None and a.shape == b.shape
        assert float((a - b).norm() / b.norm()) < 4 * BF16_U


def test_the_loop_sums_adapters_in_the_matmul_only_under_cpu_autocast(tmp_path, monkeypatch):
    """LoRA under CPU autocast: each adapted layer (q, v, up in 2 layers) served for the whole
    run; in fp32 none."""
    import contextlib

    seen = []
    real = loop.lora_sums_in_matmul

    @contextlib.contextmanager
    def spy(model, enabled=True):
        with real(model, enabled) as n:
            seen.append(n)
            yield n

    monkeypatch.setattr(loop, "lora_sums_in_matmul", spy)
    _train_lora(tmp_path / "amp", steps=1)
    cfg = config(tmp_path / "fp32", max_steps=1, lr=1e-2)
    stream = BatchStream(random_examples(), cfg.batch_size, pad_collate, seed=0)
    train(_init_model("lora"), LMObjective(), stream, cfg, prepare_run(cfg, "test"),
          dtype=torch.float32)
    assert seen == [3 * 2, 0]
