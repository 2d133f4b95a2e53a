"""`lmlab quantize` through the CLI on tiny models: final/ reloads, summary has the table's
columns, bad settings fail before anything is written."""

import json
from pathlib import Path

import pytest

from lmlab.cli import main

pytest.importorskip("torchao")
TEXT = str(Path(__file__).resolve().parents[1] / "assets" / "quant" / "heldout.txt")


def _quantize(tmp_path, *extra, name="run"):
    out = tmp_path / name
    args = ["quantize", "model=tiny:llama", f"output_dir={out}", f"ppl_text={TEXT}",
            "ppl_windows=2", "eval_n=2", "eval_max_new_tokens=2", "decode_tokens=2",
            "data=task:add", *extra]
    return main(args), out


def test_int8_run_writes_a_smaller_model_that_reloads(tmp_path):
    from lmlab.models import load_model

    rc, out = _quantize(tmp_path, "method=int8-weight")
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["method"] == "int8-weight" and s["reload_max_abs_diff"] == 0.0
    assert s["size_ratio"] > 3.5  # int8 rows + one int8 table for the tied embedding / head
    assert s["disk_bytes"] < s["fp32"]["weight_bytes"] / 3.5
    for key in ("perplexity", "accuracy", "decode_tok_s", "prefill_tok_s", "perplexity_change"):
        assert key in s, key
    assert abs(s["perplexity_change"]) < 0.02
    model = load_model(str(out))
    assert type(model.model.layers[0].mlp.up_proj.weight).__name__ != "Parameter"


def test_decode_weights_rows_measure_the_float_model_as_our_decode_reads_it(tmp_path):
    """method=fp32 decode_weights=[bf16,int8]: a row per precision with the table's columns,
    bytes read per step falling with the precision, perplexity of the rounded weights beside
    fp32's (int8 per row moves a tiny model's perplexity a little, not a lot)."""
    rc, out = _quantize(tmp_path, "method=fp32", "decode_weights=[bf16,int8]")
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    rows = s["decode_weights"]
    assert list(rows) == ["bf16", "int8"]
    for row in rows.values():
        for key in ("perplexity", "perplexity_change", "accuracy", "decode_tok_s",
                    "decode_speedup", "weight_bytes"):
            assert key in row, key
        assert abs(row["perplexity_change"]) < 0.05
    assert s["weight_bytes"] > rows["bf16"]["weight_bytes"] > rows["int8"]["weight_bytes"]
    assert rows["int8"]["perplexity_change"] != 0.0  # the rounding shows


def test_refuses_an_already_quantized_model(tmp_path, capsys):
    rc, out = _quantize(tmp_path, "method=int4-weight", "compare_fp32=false", "eval_n=0",
                        "decode_tokens=0", "ppl_windows=0")
    assert rc == 0
    rc, again = _quantize(tmp_path, f"model={out}", "method=int8-weight", name="again")
    assert rc == 1 and "already quantized (int4-weight)" in capsys.readouterr().err
    assert not again.exists()


def test_smooth_option_reloads(tmp_path):
    rc, out = _quantize(tmp_path, "method=fbgemm-int8", "smooth=0.5", "compare_fp32=false",
                        "eval_n=0", "decode_tokens=0")
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["smooth"] == 0.5 and s["reload_max_abs_diff"] == 0.0


def test_structured_prune_option(tmp_path):
    rc, out = _quantize(tmp_path, "method=fp16", "prune=structured", "sparsity=0.5",
                        "compare_fp32=false", "eval_n=0", "decode_tokens=0")
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["prune"]["mlp_channels_after"] == 64
    cfg = json.loads((out / "final" / "config.json").read_text())
    assert cfg["intermediate_size"] == 64


@pytest.mark.slow  # reading a GGUF's 49k-token vocabulary back takes ~20 s
def test_gguf_option(tmp_path):
    rc, out = _quantize(tmp_path, "method=fp32", "gguf=q8_0", "eval_n=0", "decode_tokens=0")
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["gguf"]["file"] == "model.q8_0.gguf" and s["gguf"]["reload_rel_error"] < 0.03
    assert (out / "model.q8_0.gguf").exists()


@pytest.mark.parametrize("args,message", [
    (["method=int3"], "method"),
    (["method=int4-weight", "group_size=48"], "group_size"),
    (["prune=unstructured"], "sparsity"),
    (["prune=magnitude", "sparsity=0.5"], "prune"),
    (["decode_weights=[fp16]"], "decode_weights: 'fp16' is not one of bf16, int8"),
])
def test_bad_settings_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    rc, out = _quantize(tmp_path, *args)
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
