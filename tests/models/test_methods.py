"""Fine-tuning methods (models.methods, models.virtual, models.bottleneck) on the tiny model:
parameter counts by hand, zero-init adapters, parity of the virtual tokens with peft, save/load
round trips, and `lmlab sft method=...` smoke and exact resume through the CLI."""

import json
import warnings
from pathlib import Path

import pytest
import torch

from lmlab.cli import main
from lmlab.models import load_model, write_meta
from lmlab.models.adapters import count_parameters
from lmlab.models.methods import MethodSpec, apply_method, save_method
from tests.tolerance import forward_terms, fp32_tol

DATA = str(Path(__file__).resolve().parents[1] / "assets" / "sft" / "chat.jsonl")
IDS = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16]])

# tiny:llama: 2 layers, width D=64, MLP width I=128, 4 heads of 16, 2 KV heads (k/v width 32).
# Per layer, (in, out) of q, k, v, o, gate, up, down: (64,64) (64,32) (64,32) (64,64) (64,128)
# (64,128) (128,64).
D, KV, I, LAYERS, N_VIRTUAL, R, ADAPTER = 64, 32, 128, 2, 4, 8, 16
LORA = R * ((64 + 64) + (64 + 32) * 2 + (64 + 64) + (64 + 128) * 2 + (128 + 64)) * LAYERS
HAND = {
    "lora": LORA,  # r (in + out) per projection
    "dora": LORA + (64 + 32 + 32 + 64 + 128 + 128 + 64) * LAYERS,  # + a magnitude per output
    "ia3": (KV + KV + I) * LAYERS,  # k, v outputs scaled; down_proj's input (feedforward)
    "prefix": N_VIRTUAL * LAYERS * 2 * KV,  # a key and a value (Hkv * Dh = 32) per layer
    "prompt": N_VIRTUAL * D,  # n input embeddings
    "ptuning": N_VIRTUAL * D + 3 * (D * D + D),  # embeddings + the MLP encoder's 3 linears
    # two adapters per layer, each down (D*r + r) and up (r*D + D)
    "adapter": 2 * LAYERS * (D * ADAPTER + ADAPTER + ADAPTER * D + D),
}
SPEC = {"lora_r": R, "num_virtual_tokens": N_VIRTUAL, "adapter_dim": ADAPTER}


def _build(method: str, **kw):
    torch.manual_seed(0)
    model = apply_method(load_model("tiny:llama"), MethodSpec(method, **{**SPEC, **kw}))
    with torch.no_grad():  # trained-looking weights: LoRA's B and the adapters' up start at 0
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def base_total():
    return count_parameters(load_model("tiny:llama"))[1]


@pytest.mark.parametrize("method", sorted(HAND))
def test_trainable_parameters_counted_by_hand(method, base_total):
    trainable, total = count_parameters(apply_method(load_model("tiny:llama"),
                                                     MethodSpec(method, **SPEC)))
    base = base_total
    assert trainable == HAND[method]
    assert total == base + HAND[method]  # every method adds its parameters, replaces none


def test_pfeiffer_adapter_is_mlp_only():
    model = apply_method(load_model("tiny:llama"),
                         MethodSpec("adapter", adapter_dim=ADAPTER, adapter_style="pfeiffer"))
    assert count_parameters(model)[0] == HAND["adapter"] // 2
    assert type(model.model.layers[0].self_attn).__name__ == "LlamaAttention"


@pytest.mark.parametrize("style", ["houlsby", "pfeiffer"])
def test_bottleneck_zero_init_leaves_the_output_unchanged(style):
    base = load_model("tiny:llama").eval()
    with torch.no_grad():
        want = base(input_ids=IDS).logits
    model = apply_method(base, MethodSpec("adapter", adapter_style=style, adapter_act="gelu"))
    with torch.no_grad():
        got = model(input_ids=IDS).logits
    assert torch.equal(got, want)  # h + up(act(down(h))) with up = 0 is h exactly
    down = model.model.layers[0].mlp.adapter.down.weight
    assert down.requires_grad and down.abs().sum() > 0  # only the up projection starts at 0


@pytest.mark.parametrize("method", ["prefix", "prompt", "ptuning"])
def test_virtual_tokens_equal_peft_and_the_cached_decode(method):
    """Our KV-cache form of the virtual tokens gives peft's own forward's logits, and a
    prefill + one cached step give the full forward's."""
    from transformers import DynamicCache

    from lmlab.models.compat import with_cache

    model = _build(method)
    with torch.no_grad():
        ours = model(input_ids=IDS, use_cache=False).logits
        with warnings.catch_warnings():  # peft hands its prefix over as past_key_values
            warnings.simplefilter("ignore", FutureWarning)
            ref = model.peft(input_ids=IDS).logits[:, -IDS.shape[1]:]  # peft: n + T logits
        cache = DynamicCache(config=model.config)
        mask = torch.ones_like(IDS)
        first = model(input_ids=IDS[:, :5], attention_mask=mask[:, :5],
                      position_ids=torch.arange(5)[None].expand(2, -1), **with_cache(model, cache),
                      use_cache=True).logits
        last = model(input_ids=IDS[:, 5:], attention_mask=mask,
                     position_ids=torch.full((2, 1), 5), **with_cache(model, cache),
                     use_cache=True).logits
    tol = fp32_tol(forward_terms(model.config, N_VIRTUAL + 6), ref.abs().max().item())
    assert (ours - ref).abs().max() <= tol
    assert (torch.cat([first, last], 1) - ours).abs().max() <= tol
    with torch.no_grad():
        base = load_model("tiny:llama")(input_ids=IDS).logits
    assert (ours - base).abs().max() > 100 * tol  # the virtual tokens do change the output


@pytest.mark.parametrize("method", ["lora", "dora", "ia3", "prefix", "prompt", "ptuning",
                                    "adapter"])
def test_save_and_load_round_trip_gives_equal_logits(tmp_path, method):
    model = _build(method)
    with torch.no_grad():
        want = model(input_ids=IDS).logits
    merged = save_method(model, tmp_path, method, merge=method in ("lora", "dora", "ia3"))
    if not merged:
        write_meta(tmp_path, stage="sft", method=method, merged=False, base="tiny:llama")
    loaded = load_model(str(tmp_path)).eval()
    with torch.no_grad():
        got = loaded(input_ids=IDS).logits
    if merged:  # folding B·A (or the IA3 scale) into W rounds once per weight
        assert (got - want).abs().max() <= fp32_tol(forward_terms(model.config, 6),
                                                    want.abs().max().item())
    else:
        assert torch.equal(got, want)


def _sft(tmp_path, *extra, name="run"):
    out = tmp_path / name
    args = ["sft", "model=tiny:llama", f"data={DATA}", f"output_dir={out}", "max_steps=3",
            "batch_size=4", "lr=1e-2", "warmup_steps=0", "progress=false", "eval_n=0",
            f"num_virtual_tokens={N_VIRTUAL}", *extra]
    return main(args), out


SMOKE_DEFAULT = ["adapter", "prompt", "ia3"]
SMOKE_SLOW = ["dora", "prefix", "ptuning"]


@pytest.mark.parametrize("method", SMOKE_DEFAULT + [
    pytest.param(m, marks=pytest.mark.slow) for m in SMOKE_SLOW])
def test_sft_three_step_smoke_and_final_loads(tmp_path, method):
    rc, out = _sft(tmp_path, f"method={method}", "eval_tasks=[add]", "eval_n=2",
                   "eval_splits=[test]", "eval_max_new_tokens=4")
    assert rc == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == method and summary["trainable_params"] == _hand(method)
    meta = json.loads((out / "final" / "lmlab.json").read_text())
    assert meta["merged"] == (method in ("ia3", "dora"))
    assert (meta.get("base") == "tiny:llama") == (not meta["merged"])
    model = load_model(str(out)).eval()  # what generate / evaluate / serve load
    base = load_model("tiny:llama").eval()
    with torch.no_grad():
        assert not torch.equal(model(input_ids=IDS).logits, base(input_ids=IDS).logits)


def _hand(method: str) -> int:
    """HAND at the CLI's lora_r=16: LoRA's part doubles, DoRA's magnitudes stay."""
    return HAND[method] + LORA if method == "dora" else HAND[method]


@pytest.mark.parametrize("method", ["adapter", pytest.param("prompt", marks=pytest.mark.slow),
                                    pytest.param("ia3", marks=pytest.mark.slow),
                                    pytest.param("dora", marks=pytest.mark.slow),
                                    pytest.param("prefix", marks=pytest.mark.slow),
                                    pytest.param("ptuning", marks=pytest.mark.slow)])
def test_resume_auto_continues_exactly(tmp_path, method):
    common = (f"method={method}", "schedule=constant", "save_every=1")
    rc, full = _sft(tmp_path, *common, "max_steps=4", name="full")
    assert rc == 0
    rc, part = _sft(tmp_path, *common, "max_steps=2", name="part")
    assert rc == 0
    rc, part = _sft(tmp_path, *common, "max_steps=4", "resume=auto", name="part")
    assert rc == 0
    a = json.loads((full / "metrics.jsonl").read_text().splitlines()[-1])
    b = json.loads((part / "metrics.jsonl").read_text().splitlines()[-1])
    assert b["step"] == 4 and a["train/loss"] == b["train/loss"]


def test_merged_load_refuses_what_cannot_merge(tmp_path):
    from lmlab.errors import ModelRefError

    model = _build("adapter")
    save_method(model, tmp_path, "adapter", merge=False)
    write_meta(tmp_path, stage="sft", method="adapter", merged=False, base="tiny:llama")
    with pytest.raises(ModelRefError, match="cannot be merged"):
        load_model(str(tmp_path), merge_adapter=True)


def _greedy_by_recompute(model, ids: list[int], n: int) -> list[int]:
    """The reference: n greedy tokens, each from a full forward over everything so far."""
    out = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([ids + out]), use_cache=False).logits
            out.append(int(logits[0, -1].argmax()))
    return out


@pytest.mark.parametrize("method", ["prefix", "adapter"])
def test_generate_and_serve_decode_what_the_full_forward_predicts(method):
    """The paths `lmlab generate`/`evaluate` (batched, left-padded, KV cache) and `serve`
    (one cache per sequence) take give the recomputed greedy tokens."""
    from lmlab.infer.decode import generate
    from lmlab.infer.sampling import SamplingParams
    from lmlab.models import load_tokenizer
    from lmlab.serve.runner import PerSeqKV

    model, tok = _build(method), load_tokenizer("tiny:llama")
    prompts = ["Hello there, how are", "A"]
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    want = [_greedy_by_recompute(model, x, 5) for x in ids]
    got = generate(model, tok, prompts, SamplingParams(max_new_tokens=5, temperature=0,
                                                       ignore_eos=True), batch_size=2)
    assert [c.token_ids for c in got] == want
    kv = PerSeqKV(model)
    with torch.no_grad():
        nxt = kv.prefill(["a", "b"], ids).argmax(-1).tolist()
        served = [[t] for t in nxt]
        for _ in range(4):
            nxt = kv.decode(["a", "b"], nxt).argmax(-1).tolist()
            for s, t in zip(served, nxt):
                s.append(t)
    assert served == want
