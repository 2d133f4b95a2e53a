"""The on-demand benchmark scripts still run against the current stage code (smoke runs on the
tiny model: their timings are not checked, they are not measurements)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_bench_rl_runs_on_the_tiny_model():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "benchmarks/bench_rl.py", "--model", "tiny:llama",
                          "--steps", "2", "--warmup", "1", "--threads", "1", "--sides", "lmlab",
                          "--no-pieces"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| lmlab |" in out.stdout


def test_bench_bandwidth_runs_on_the_tiny_model(tmp_path):
    """Smoke run; the weight bytes per token are checked against a count by hand from the
    tiny config (projections, norms, the tied LM head in full, one embedding row)."""
    from lmlab.models.tiny import PRESETS

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out_json = tmp_path / "bw.json"
    out = subprocess.run([sys.executable, "benchmarks/bench_bandwidth.py", "--model", "tiny:llama",
                          "--threads", "1", "--bw-threads", "1", "--mib", "8", "--bw-repeats",
                          "2", "--new-tokens", "4", "--repeats", "1", "--profile-steps", "2",
                          "--pairs", "2", "--decode-pairs", "3", "--out", str(out_json)], cwd=ROOT,
                         env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out_json.read_text())
    c = PRESETS["llama"]
    D, I, L, H, Hkv = (c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"],
                       c["num_attention_heads"], c["num_key_value_heads"])
    V, Dh = 49152, D // H  # the SmolLM2 tokenizer's vocabulary
    per_layer = 2 * D * D + 2 * D * Hkv * Dh + 3 * D * I + 2 * D  # q, o, k, v, MLP, 2 norms
    assert r["weights_per_token"]["bytes"] == 4 * (L * per_layer + V * D + D + D)
    assert r["weights_per_token"]["tied_embeddings"] is True
    assert r["weights_per_token"]["kv_cache_bytes_per_context_token"] == 2 * L * Hkv * Dh * 4
    bw, after = r["bandwidth"]["tests"]["1"], r["bandwidth_after"]["tests"]["1"]
    assert min(bw.values()) > 0 and r["bound"]["bandwidth_GB_s"] == max(
        bw["copy_GB_s (read+write)"], bw["read_sum_GB_s"], after["copy_GB_s (read+write)"],
        after["read_sum_GB_s"])
    for name in ("ours", "ours_packed", "ours_packed_torch", "hf_generate"):
        d = r["decode"][name]
        assert d["tok_s"] > 0 and d["same_tokens_as_ours"], name
        assert abs(d["pct_of_bound"] - 100 * d["tok_s"] / r["bound"]["tok_s"]) < 0.2
    assert 0 < r["profile"]["ours"]["matmul_share"] <= 1
    assert r["matmul_by_kind"]["packed"]["all"]["ms"] > 0
    assert set(r["matmul_by_kind"]["F.linear"]) == {"q_proj", "k_proj", "v_proj", "o_proj",
                                                   "gate_proj", "up_proj", "down_proj",
                                                   "lm_head", "all"}
    assert "| ours_packed |" in out.stdout
    from lmlab.infer import native

    if native.available():  # the C step alone, timed against a plain read in pairs
        nv = r["native_vs_read"]
        assert len(nv["pairs"]) == 2 and nv["best_step_GB_s"] > 0 and nv["median_ratio"] > 0
    dp = r["decode_pairs"]  # each decode against the better read just before / after it
    assert len(dp["pairs"]) == 3 and len(dp["reads_GB_s"]) == 4
    for i, q in enumerate(dp["pairs"]):
        assert q["read_GB_s"] == pytest.approx(max(dp["reads_GB_s"][i:i + 2]), abs=0.01)
        assert q["pct"] == pytest.approx(100 * q["tok_s"] / q["bound_tok_s"], abs=0.2)
    assert dp["median_pct"] == sorted(q["pct"] for q in dp["pairs"])[1]


def test_bench_draft_runs_on_tiny_models(tmp_path):
    """Smoke run: each row alternates plain and speculative --repeats times and records both;
    with a draft vocabulary too; speculative output identical to plain greedy."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out_json = tmp_path / "draft.json"
    out = subprocess.run([sys.executable, "benchmarks/bench_draft.py", "--model", "tiny:llama",
                          "--draft", "tiny:llama4", "--prompts", "2", "--new-tokens", "4",
                          "--k", "2", "--draft-vocab", "0", "64", "--pack", "yes",
                          "--draft-bf16", "both",
                          "--repeats", "2", "--threads", "1", "--read-mib", "8",
                          "--out", str(out_json)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out_json.read_text())["rows"]
    assert all(len(r["read_GB_s_before"]) == 4 and all(g > 0 for g in r["read_GB_s_before"])
               for r in rows)
    assert [(r["k"], r["draft_vocab"], r["pack"], r["draft_bf16"]) for r in rows] == \
        [(2, 0, True, False), (2, 0, True, True), (2, 64, True, False), (2, 64, True, True)]
    assert all(len(r["plain_all_s"]) == len(r["spec_all_s"]) == 2 and r["identical"]
               for r in rows)


def test_bench_tokenizer_smoke(tmp_path):
    """Tiny corpus, tiny vocab: both sides train, the twin equals HF; timings not checked."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat, then the hat sat on the cat.\n" * 400)
    out_json = tmp_path / "tok.json"
    out = subprocess.run([sys.executable, "benchmarks/bench_tokenizer.py", "--corpus",
                          str(corpus), "--vocab", "300", "--repeats", "1", "--heldout-chars",
                          "2000", "--threads", "1", "--no-lock", "--out", str(out_json)],
                         cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out_json.read_text())["results"]
    assert r["twin_merges_equal"] and r["twin_ids_equal"] and r["hf"]["train_mb_s"] > 0
    assert "| scratch twin |" in out.stdout
@pytest.mark.slow  # imports sentence-transformers' trainer and starts a server: ~1 min
def test_bench_embed_runs_on_the_tiny_encoder(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out_json = tmp_path / "embed.json"
    out = subprocess.run([sys.executable, "benchmarks/bench_embed.py", "--model", "tiny:bert",
                          "--steps", "3", "--warmup", "1", "--batch", "4", "--rows", "40",
                          "--texts", "40", "--encode-batch", "8", "--threads", "1", "--rounds",
                          "2", "--extra", "lmlab_padded", "--out", str(out_json)], check=False,
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out_json.read_text())["results"]
    assert list(r["train"]) == ["lmlab", "lmlab_padded", "sentence_transformers"]
    assert all(len(v["rounds"]) == 2 for v in r["train"].values())
    assert r["train"]["lmlab"]["speedup"] > 0
    e = r["encode"]
    assert e["texts"] == 40 and e["lmlab"]["texts_per_s"] > 0 and e["lmlab"]["speedup"] > 0
    assert e["max_abs_diff_vs_st"] < 1e-4  # the served vectors are sentence-transformers' own
    assert "| SentenceTransformerTrainer |" in out.stdout


@pytest.mark.slow
def test_bench_llamacpp_decode_runs_on_the_tiny_model(tmp_path):
    """Smoke run of the decode section (needs the llamacpp extra): every row measured, the
    llama.cpp rows compared with ours token by token."""
    pytest.importorskip("llama_cpp")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LMLAB_CACHE": str(tmp_path / "cache")}
    out_json = tmp_path / "llamacpp.json"
    out = subprocess.run([sys.executable, "benchmarks/bench_llamacpp.py", "--model", "tiny:llama",
                          "--only", "decode", "--new-tokens", "2", "--repeats", "1", "--threads",
                          "1", "--gguf", "f16", "q4_0", "--smoke", "--out", str(out_json)],
                         check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = list(json.loads(out_json.read_text())["decode"].values())
    assert len(rows) == 2 * 2 + 2 * 2 + 2  # ours x2, llama.cpp x2 per batch; Llama.generate x2
    assert all(r["tok_s"] > 0 and "error" not in r for r in rows)
    assert all(r["same_tokens"].endswith("/2") or r["batch"] == 8 for r in rows)


def test_bench_decode_precision_runs_on_the_tiny_model(tmp_path):
    """Smoke run: a row per precision and batch size and HF's, the bytes per step falling with
    the precision (fp32 - bf16 = 2 bytes per matrix weight), the bound and agreement filled."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out_json = tmp_path / "dp.json"
    out = subprocess.run([sys.executable, "benchmarks/bench_decode_precision.py", "--model",
                          "tiny:llama", "--threads", "1", "--mib", "8", "--new-tokens", "3",
                          "--repeats", "1", "--batches", "1", "2", "--out", str(out_json)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out_json.read_text())["rows"]
    ours = {(r["weights"], r["batch"]): r for r in rows if r["engine"] == "lmlab"}
    assert set(ours) == {(w, b) for w in ("fp32", "bf16", "int8") for b in (1, 2)}
    assert [r["batch"] for r in rows if r["engine"] == "hf"] == [1, 2]
    mb = [ours[(w, 1)]["weight_MB_per_step"] for w in ("fp32", "bf16", "int8")]
    assert mb[0] > mb[1] > mb[2]
    assert all(r["bound_tok_s"] > 0 and "agreement_vs_fp32" in r
               for (w, _), r in ours.items() if w != "fp32")
