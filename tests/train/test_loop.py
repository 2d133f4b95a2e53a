import pytest
import torch

from lmlab.errors import UserError
from lmlab.losses.objectives import LMObjective
from lmlab.models import load_model
from lmlab.runs import prepare_run
from lmlab.train.data import BatchStream
from lmlab.train.loop import TrainingDiverged, train
from tests.tolerance import approx_fp32, fp32_tol, sum_terms

from .helpers import config, pad_collate, random_examples


def _run(tmp_path, examples=None, *, stop_after=None, model=None, shuffle=True, **kw):
    cfg = config(tmp_path, **kw)
    run = prepare_run(cfg, "test")
    model = model or load_model("tiny:llama")
    stream = BatchStream(examples or random_examples(), cfg.batch_size, pad_collate,
                         seed=cfg.seed, shuffle=shuffle)
    res = train(model, LMObjective(), stream, cfg, run, stop_after=stop_after)
    return model, res, run


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_three_steps_change_weights_and_log(tmp_path):
    before = _weights(load_model("tiny:llama"))
    model, res, run = _run(tmp_path)
    after = _weights(model)
    assert res.step == 3
    assert any(not torch.equal(before[n], after[n]) for n in before)
    rows = run.read_metrics()
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["train/loss"] > 0 and r["train/tokens"] > 0 for r in rows)
    assert (run.checkpoints / "step-3" / "state.pt").exists()


def test_steps_that_slow_down_get_the_hint_once(tmp_path, monkeypatch, capsys):
    """The loop feeds each step's tokens/s to its SlowWatch and prints the hint when it says
    so (here at step 2, by hand: the watch's rule is tests/train/test_slowdown.py)."""
    from lmlab.train import slowdown

    seen = []

    def see(self, rate, seconds):
        seen.append(rate)
        self.best = 2 * rate
        return len(seen) == 2

    monkeypatch.setattr(slowdown.SlowWatch, "see", see)
    monkeypatch.setenv("GOMP_SPINCOUNT", "10000")
    _run(tmp_path)
    out = capsys.readouterr()
    assert len(seen) == 3 and all(r > 0 for r in seen)
    said = (out.out + out.err).count("[lmlab] the last steps ran 2x slower")
    assert said == 1


def test_an_eval_step_is_logged_off_the_log_cadence(tmp_path):
    cfg = config(tmp_path, max_steps=6, log_every=4, eval_every=3)
    run = prepare_run(cfg, "test")
    stream = BatchStream(random_examples(), cfg.batch_size, pad_collate, seed=cfg.seed)
    train(load_model("tiny:llama"), LMObjective(), stream, cfg, run,
          eval_fn=lambda m: {"loss": 1.5})
    rows = run.read_metrics()
    assert [r["step"] for r in rows] == [3, 4, 6]
    assert [r.get("eval/loss") for r in rows] == [1.5, None, None]  # none at the last step


def test_resume_equals_uninterrupted(tmp_path):
    full, res_full, _ = _run(tmp_path / "a", max_steps=6, lr=1e-3)
    # "kill" after 2 steps (checkpoint at step 2), then resume in a fresh process-like setup
    _run(tmp_path / "b", max_steps=6, lr=1e-3, stop_after=2)
    torch.manual_seed(1234)  # a resumed run must not depend on the RNG state it starts with
    resumed, res_b, run_b = _run(tmp_path / "b", max_steps=6, lr=1e-3, resume="auto")
    assert res_b.resumed_from == 2 and res_b.step == 6
    a, b = _weights(full), _weights(resumed)
    for n in a:
        assert torch.equal(a[n], b[n]), n
    losses_a = [r["train/loss"] for r in res_full.metrics]
    losses_b = [r["train/loss"] for r in run_b.read_metrics()]
    assert losses_b == pytest.approx(losses_a, abs=0, rel=0)


def test_resume_with_dropout_lora_is_exact(tmp_path):
    from lmlab.models.adapters import add_lora

    def lora():
        torch.manual_seed(0)  # LoRA A is initialised from the global RNG (the stage seeds it)
        return add_lora(load_model("tiny:llama"), r=4, alpha=8, dropout=0.1, targets=[])

    full, _, _ = _run(tmp_path / "a", max_steps=4, model=lora())
    _run(tmp_path / "b", max_steps=4, stop_after=1, model=lora())
    resumed, _, _ = _run(tmp_path / "b", max_steps=4, resume="auto", model=lora())
    a, b = _weights(full), _weights(resumed)
    assert all(torch.equal(a[n], b[n]) for n in a)


def _recording_grads(monkeypatch):
    """Patch the loop's optimizer so each step first records a copy of every gradient."""
    from lmlab.train import loop

    steps, build = [], loop.build_optimizer

    def recording(model, cfg):
        optimizer = build(model, cfg)
        optimizer.register_step_pre_hook(lambda *_: steps.append(
            {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
        return optimizer

    monkeypatch.setattr(loop, "build_optimizer", recording)
    return steps


def test_grad_accumulation_equals_big_batch(tmp_path, monkeypatch):
    """The gradient the optimizer steps on is the same, up to fp32 summation order.

    Gradients, not weights after Adam, are compared: Adam divides by sqrt(v) + 1e-8, so a
    weight whose gradient is ~0 moves by lr x (its rounding noise / 1e-8), which is anything.
    """
    # examples of different lengths and label counts: a mean-of-means would differ here
    ex = random_examples(8, lo=4, hi=20)
    grads = _recording_grads(monkeypatch)
    _, res_big, _ = _run(tmp_path / "a", ex, batch_size=8, grad_accum=1, max_steps=1,
                         shuffle=False, lr=1e-3)
    _, res_acc, _ = _run(tmp_path / "b", ex, batch_size=2, grad_accum=4, max_steps=1,
                         shuffle=False, lr=1e-3)
    big, acc = grads
    # each gradient element sums over the step's <= 8 x 20 positions and the width 64 of the
    # matmuls it passes through: 224 terms of size up to the largest gradient in the tensor
    for n, g in big.items():
        tol = fp32_tol(224, float(g.abs().max()))
        torch.testing.assert_close(acc[n], g, atol=tol, rtol=0, msg=n)
    # the loss: a sum over <= 160 positions of a log-softmax over 49152 logits (a long sum:
    # its error is relative, ~8 sqrt(n) terms of eps, and lands on log(sum) as an absolute one)
    assert res_acc.metrics[0]["train/loss"] == approx_fp32(res_big.metrics[0]["train/loss"],
                                                           160 + sum_terms(49152))


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path):
    cfg_kw = dict(max_steps=4, save_every=1)
    _run(tmp_path, stop_after=2, **cfg_kw)
    model = load_model("tiny:llama")
    with torch.no_grad():
        model.model.embed_tokens.weight.fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match="step-2"):
        cfg = config(tmp_path, resume="no", overwrite=False, **cfg_kw)
        cfg.output_dir = str(tmp_path / "nan")
        run = prepare_run(cfg, "test")
        run.checkpoints.mkdir(parents=True)
        (tmp_path / "run" / "checkpoints" / "step-2").rename(run.checkpoints / "step-2")
        stream = BatchStream(random_examples(), 4, pad_collate)
        train(model, LMObjective(), stream, cfg, run)
    assert (tmp_path / "nan" / "checkpoints" / "step-2" / "state.pt").exists()


def test_too_little_data_clamps_the_batch_and_none_is_a_user_error():
    assert BatchStream(random_examples(3), 4, pad_collate).batch_size == 3
    with pytest.raises(UserError, match="no training examples"):
        BatchStream([], 4, pad_collate)


def test_all_masked_batch_is_a_user_error(tmp_path):
    ex = [{"input_ids": e["input_ids"], "labels": [-100] * len(e["input_ids"])}
          for e in random_examples(8)]
    with pytest.raises(UserError, match="nothing to train"):
        _run(tmp_path, ex)


def test_stream_ranks_partition_the_global_batch():
    ex = [{"input_ids": [i], "labels": [i]} for i in range(12)]
    ident = lambda b: [e["input_ids"][0] for e in b]  # noqa: E731
    one = BatchStream(ex, 4, ident, seed=3)
    r0 = BatchStream(ex, 2, ident, seed=3, rank=0, world=2)
    r1 = BatchStream(ex, 2, ident, seed=3, rank=1, world=2)
    for _ in range(5):  # crosses an epoch boundary
        assert one.next() == r0.next() + r1.next()
    state = one.state_dict()
    nxt = one.next()
    again = BatchStream(ex, 4, ident, seed=3)
    again.load_state_dict(state)
    assert again.next() == nxt
