"""Continuous batching changes nothing in the outputs: sequences that share steps (joining at
different steps, leaving early, preempted and recomputed) give what each gives decoded alone."""

import pytest

from lmlab.infer.decode import generate
from lmlab.infer.sampling import SamplingParams
from lmlab.serve.runner import Runner
from lmlab.serve.scheduler import Scheduler, SchedulerConfig, Sequence
from tests.tolerance import forward_tol

from ..tiny import varied

PROMPTS = ["Hello there, how are", "The quick brown fox jumps over the lazy dog and then",
           "A", "def add(a, b):\n    return", "Once upon a time"]


@pytest.fixture(scope="module")
def model():
    return varied()


def alone(model, tokenizer, prompt, params):
    return generate(model, tokenizer, [prompt], params, batch_size=1)[0]


def serve(runner, tokenizer, arrivals, params, cfg=None, stop_at=None):
    """Run the scheduler + runner loop; ``arrivals[step]`` = prompt indices joining before that
    step. Returns {index: Sequence} and the number of steps."""
    sched = Scheduler(cfg or SchedulerConfig(kv_budget_tokens=4096))
    seqs, t, logs = {}, 0, []
    while t <= max(arrivals) or sched.has_work:
        for i in arrivals.get(t, []):
            ids = tokenizer(PROMPTS[i], add_special_tokens=False)["input_ids"]
            p = params(i) if callable(params) else params
            seqs[i] = Sequence(str(i), ids, p.max_new_tokens, runner.new_state(p))
            sched.add([seqs[i]])
        batch = sched.schedule()
        out = runner.execute(batch)
        logs.append((len(batch.prefill), len(batch.decode), len(batch.preempted)))
        for s in sched.update(batch, out.tokens, out.stopped):
            runner.release(s)
        t += 1
    return seqs, logs


def tokens_of(seq):
    return seq.output_ids


@pytest.mark.parametrize("fast", [None, False])
def test_greedy_joining_mid_flight_equals_alone(model, tokenizer, fast):
    p = SamplingParams(temperature=0, max_new_tokens=12, ignore_eos=True)
    runner = Runner(model, tokenizer, fast=fast)
    seqs, logs = serve(runner, tokenizer, {0: [0, 1], 3: [2], 5: [3, 4]}, p)
    assert logs[3] == (1, 2, 0) and logs[5] == (2, 3, 0)  # joined a running batch
    for i, s in seqs.items():
        assert tokens_of(s) == alone(model, tokenizer, PROMPTS[i], p).token_ids, i


def test_rows_leaving_at_different_steps(model, tokenizer):
    """Different max_tokens: rows leave the packed buffers while others keep decoding."""
    def params(i):
        return SamplingParams(temperature=0, max_new_tokens=3 + 4 * i, ignore_eos=True)

    runner = Runner(model, tokenizer)
    seqs, _ = serve(runner, tokenizer, {0: [0, 1, 2, 3], 2: [4]}, params)
    for i, s in seqs.items():
        assert tokens_of(s) == alone(model, tokenizer, PROMPTS[i], params(i)).token_ids, i
    assert runner.kv.order == []


def test_preempted_sequences_recompute_to_the_same_output(model, tokenizer):
    p = SamplingParams(temperature=0, max_new_tokens=24, ignore_eos=True)
    cfg = SchedulerConfig(kv_budget_tokens=64, block_size=4)
    runner = Runner(model, tokenizer)
    seqs, logs = serve(runner, tokenizer, {0: [0, 1, 3]}, p, cfg)
    assert sum(x[2] for x in logs) > 0 and any(s.preemptions for s in seqs.values())
    for i, s in seqs.items():
        assert tokens_of(s) == alone(model, tokenizer, PROMPTS[i], p).token_ids, i


def test_prefix_cache_reuses_shared_prompt_blocks(model, tokenizer):
    """Prompts sharing a 40-token head (like a chat template's system prompt): later ones start
    after its cached blocks - in the same step and in later ones - with unchanged outputs."""
    global PROMPTS
    head = "You are a helpful assistant. Answer briefly and precisely, please. " * 3
    saved, PROMPTS = PROMPTS, [head + p for p in PROMPTS]
    try:
        p = SamplingParams(temperature=0, max_new_tokens=8, ignore_eos=True)
        runner = Runner(model, tokenizer, prefix_cache_tokens=256)
        seqs, _ = serve(runner, tokenizer, {0: [0], 1: [1, 2], 4: [3, 4]}, p)
        assert runner.kv.prefix.hit_tokens >= 4 * 32
        for i, s in seqs.items():
            assert tokens_of(s) == alone(model, tokenizer, PROMPTS[i], p).token_ids, i
    finally:
        PROMPTS = saved


def test_seeded_sampling_per_sequence_equals_alone(model, tokenizer):
    def params(i):
        return SamplingParams(temperature=0.9, top_p=0.9, repetition_penalty=1.2,
                              max_new_tokens=10, seed=100 + i, ignore_eos=True)

    seqs, _ = serve(Runner(model, tokenizer), tokenizer, {0: [0, 1], 2: [2, 3]}, params)
    for i, s in seqs.items():
        assert tokens_of(s) == alone(model, tokenizer, PROMPTS[i], params(i)).token_ids, i


def test_eos_stop_string_and_logprobs(model, tokenizer):
    free = alone(model, tokenizer, PROMPTS[1],
                 SamplingParams(temperature=0, max_new_tokens=10, ignore_eos=True))
    eos_tok = free.token_ids[4]
    stop = tokenizer.decode(free.token_ids[2:4])
    p_eos = SamplingParams(temperature=0, max_new_tokens=10, stop_token_ids=[eos_tok],
                           logprobs=True)
    p_stop = SamplingParams(temperature=0, max_new_tokens=10, stop=[stop])
    runner = Runner(model, tokenizer)
    sched = Scheduler(SchedulerConfig())
    ids = tokenizer(PROMPTS[1], add_special_tokens=False)["input_ids"]
    a = Sequence("a", ids, 10, runner.new_state(p_eos, top_logprobs=3))
    b = Sequence("b", ids, 10, runner.new_state(p_stop))
    sched.add([a, b])
    lps = []
    while sched.has_work:
        batch = sched.schedule()
        out = runner.execute(batch)
        if "a" in out.logprobs:
            lps.append(out.logprobs["a"])
        sched.update(batch, out.tokens, out.stopped)
    first = free.token_ids.index(eos_tok)
    assert a.finish_reason == "eos" and a.output_ids == free.token_ids[:first + 1]
    assert b.finish_reason == "stop" and stop in tokenizer.decode(b.output_ids)
    ref = alone(model, tokenizer, PROMPTS[1], p_eos).logprobs
    assert [x[0] for x in lps] == pytest.approx(ref, abs=1e-4)
    assert all(len(top) == 3 and top[0][1] >= x for x, top in lps)


def test_packed_weights_change_nothing_but_rounding(model, tokenizer):
    """The oneDNN-packed projections (fp32, CPU) decode the same greedy tokens as F.linear, with
    logits equal up to fp32 rounding; every projection and the LM head goes through them."""
    import torch

    from lmlab.infer.packed import can_pack

    if not can_pack(model.lm_head.weight):
        pytest.skip("this torch build has no oneDNN (torch.backends.mkldnn)")
    p = SamplingParams(temperature=0, max_new_tokens=10, ignore_eos=True)
    runs = {}
    for pack in (True, False):
        runner = Runner(model, tokenizer, pack_weights=pack)
        seqs, _ = serve(runner, tokenizer, {0: [0, 1], 2: [2]}, p)
        ids = tokenizer(PROMPTS[3], add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = runner.kv.prefill(["x"], [ids])
        runs[pack] = ({i: tokens_of(s) for i, s in seqs.items()}, logits, runner.kv.lin.count)
    assert runs[True][0] == runs[False][0]
    want = runs[False][1]  # oneDNN's products against MKL's: other kernels, other sum orders
    torch.testing.assert_close(runs[True][1], want, rtol=0, atol=forward_tol(
        model.config, len(ids)) * float(want.abs().max()))
    assert runs[True][2] == 7 * model.config.num_hidden_layers + 1 and runs[False][2] == 0


def test_native_decode_steps_equal_the_torch_layer_loop(model, tokenizer, monkeypatch):
    """With packed weights, decode steps of up to ``native.MAX_ROWS`` rows run the C step
    (``infer.native``), each row writing and attending at its own column: the same greedy tokens
    as decoding alone while rows join and leave, and the logits of the torch layer loop over
    rows of different lengths up to fp32 rounding."""
    import torch

    from lmlab.infer import native

    if not native.available():
        pytest.skip(f"no native step: {native.why_not()}")
    calls = []
    real = native.NativeStep.step
    monkeypatch.setattr(native.NativeStep, "step",
                        lambda self, *a, **k: calls.append(a[2].shape[0]) or real(self, *a, **k))
    p = SamplingParams(temperature=0, max_new_tokens=10, ignore_eos=True)
    runner = Runner(model, tokenizer, pack_weights=True)
    assert runner.kv.native is not None
    seqs, _ = serve(runner, tokenizer, {0: [0, 1], 3: [2], 5: [3, 4]}, p)
    for i, s in seqs.items():
        assert tokens_of(s) == alone(model, tokenizer, PROMPTS[i], p).token_ids, i
    assert max(calls) == 5 and len(calls) >= 10  # every decode step took it, 5 rows at most
    kv = runner.kv  # three rows of different lengths, then one step both ways
    for sid in list(kv.order):
        kv.release(sid)
    with torch.no_grad():
        for j in range(3):
            kv.prefill([str(j)], [tokenizer(PROMPTS[j], add_special_tokens=False)["input_ids"]])
        keep = [(k.clone(), v.clone()) for k, v in zip(kv.k, kv.v)]
        lens = list(kv.lens)
        got = kv.decode(["0", "1", "2"], [5, 6, 7])
        kv.k, kv.v = [k for k, _ in keep], [v for _, v in keep]
        kv.lens = lens
        tok, pos = torch.tensor([[5], [6], [7]]), torch.tensor(lens)[:, None]
        want = kv._forward(tok, pos, 0, max(lens) + 1)
    assert len(set(lens)) == 3
    torch.testing.assert_close(got, want, rtol=0,
                               atol=forward_tol(model.config) * float(want.abs().max()))


@pytest.mark.parametrize("weights", ["bf16", "int8"])
def test_rounded_weights_serve_what_decoding_alone_gives(model, tokenizer, weights):
    """``decode_weights``: rows joining and leaving a batch over bf16 / int8 weights get the
    greedy tokens each gets decoded alone at that precision (``pack=<weights>``), and the
    server's packed copies and C step both read that precision."""
    from lmlab.infer import native
    from lmlab.infer.packed import can_pack

    if not can_pack(model.lm_head.weight):
        pytest.skip("this torch build has no oneDNN (torch.backends.mkldnn)")
    p = SamplingParams(temperature=0, max_new_tokens=10, ignore_eos=True)
    runner = Runner(model, tokenizer, pack_weights=True, decode_weights=weights)
    assert runner.kv.lin.weights == weights
    assert runner.kv.native is None or runner.kv.native.weights == weights
    seqs, _ = serve(runner, tokenizer, {0: [0, 1], 3: [2], 5: [3, 4]}, p)
    for i, s in seqs.items():
        want = generate(model, tokenizer, [PROMPTS[i]], p, batch_size=1, pack=weights)[0]
        assert tokens_of(s) == want.token_ids, i
    assert native.available() is (runner.kv.native is not None)
